// The data path follows what the kernel proved it can do, never its
// version: each missing piece turns auto into copy and zero-copy into a
// clear refusal.
#include "engine/data_path.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "ublk/uapi.h"

namespace ublkgw::engine {
namespace {

using ::testing::HasSubstr;
using ::testing::AllOf;
using ::testing::Not;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::IsOkAndHolds;
using ::ublkgw::testing::StatusIs;

// What sid's 7.2 answers over TCP.
FixedBufferSupport Everything() {
  FixedBufferSupport s;
  s.send = s.send_zc = s.recv = s.write_fixed = s.read_fixed = true;
  return s;
}

// What trixie's 6.12 (and 6.15 to 7.1) answers: no SEND/RECV flag.
FixedBufferSupport NoSendRecvFlag() {
  FixedBufferSupport s = Everything();
  s.send = s.recv = false;
  return s;
}

constexpr uint64_t kAutoBufReg = ublk::kFAutoBufReg;

TEST(ChooseDataPathTest, AutoTakesZeroCopyWhereEveryPieceWorks) {
  auto plan = ChooseDataPath(DataPathMode::kAuto, kAutoBufReg, Everything(), 65536);
  ASSERT_THAT(plan, IsOk());
  EXPECT_TRUE(plan->zero_copy);
  EXPECT_EQ(plan->WriteOpFor(4096), WriteOp::kSend);
  EXPECT_EQ(plan->WriteOpFor(65535), WriteOp::kSend);
  EXPECT_EQ(plan->WriteOpFor(65536), WriteOp::kSendZc);
  EXPECT_EQ(plan->read, ReadOp::kRecv);
  EXPECT_THAT(plan->detail, HasSubstr("SEND below 64 KiB, SEND_ZC from it"));
}

TEST(ChooseDataPathTest, NoSendZcToAServerOnThisHostUnlessAskedFor) {
  // Loopback delivery copies SEND_ZC's pages anyway: SEND alone is cheaper.
  auto local = ChooseDataPath(DataPathMode::kAuto, kAutoBufReg, Everything(), {}, true);
  ASSERT_THAT(local, IsOk());
  EXPECT_EQ(local->WriteOpFor(1 << 20), WriteOp::kSend);
  EXPECT_THAT(local->detail, HasSubstr("the server is on this host"));
  // An operator's threshold is used as given.
  auto asked = ChooseDataPath(DataPathMode::kAuto, kAutoBufReg, Everything(), 0, true);
  ASSERT_THAT(asked, IsOk());
  EXPECT_EQ(asked->WriteOpFor(4096), WriteOp::kSendZc);
  // Where SEND_ZC is the only way to send, it is used, local or not.
  FixedBufferSupport zc_only = Everything();
  zc_only.send = zc_only.write_fixed = false;
  auto only = ChooseDataPath(DataPathMode::kAuto, kAutoBufReg, zc_only, {}, true);
  ASSERT_THAT(only, IsOk());
  EXPECT_EQ(only->WriteOpFor(4096), WriteOp::kSendZc);
}

TEST(ChooseDataPathTest, RemoteServersGetNoSendZcUnlessAskedFor) {
  // SEND_ZC lends block pages to the network stack: opt-in only.
  auto plan = ChooseDataPath(DataPathMode::kAuto, kAutoBufReg, Everything(), {}, false);
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->WriteOpFor(1 << 20), WriteOp::kSend);
  EXPECT_THAT(plan->detail, HasSubstr("no SEND_ZC unless asked"));
  auto asked = ChooseDataPath(DataPathMode::kAuto, kAutoBufReg, Everything(),
                              kDefaultSendZcMinBytes, false);
  ASSERT_THAT(asked, IsOk());
  EXPECT_EQ(asked->WriteOpFor(kDefaultSendZcMinBytes - 512), WriteOp::kSend);
  EXPECT_EQ(asked->WriteOpFor(kDefaultSendZcMinBytes), WriteOp::kSendZc);
}

TEST(ChooseDataPathTest, AThresholdOfZeroMeansSendZcForEveryWrite) {
  auto plan = ChooseDataPath(DataPathMode::kZeroCopy, kAutoBufReg, Everything(), 0);
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->WriteOpFor(512), WriteOp::kSendZc);
  EXPECT_THAT(plan->detail, HasSubstr("writes sent with SEND_ZC,"));
}

TEST(ChooseDataPathTest, KernelsWithoutTheSocketFlagUseTheFileOps) {
  // 6.16 to 7.1: SEND_ZC for large writes, WRITE_FIXED for small ones,
  // READ_FIXED for reads.
  auto plan = ChooseDataPath(DataPathMode::kAuto, kAutoBufReg, NoSendRecvFlag(), 65536);
  ASSERT_THAT(plan, IsOk());
  EXPECT_TRUE(plan->zero_copy);
  EXPECT_EQ(plan->WriteOpFor(4096), WriteOp::kWriteFixed);
  EXPECT_EQ(plan->WriteOpFor(1 << 20), WriteOp::kSendZc);
  EXPECT_EQ(plan->read, ReadOp::kReadFixed);
}

TEST(ChooseDataPathTest, UnixSocketsHaveNoSendZc) {
  FixedBufferSupport unix_socket = Everything();
  unix_socket.send_zc = false;
  auto plan = ChooseDataPath(DataPathMode::kAuto, kAutoBufReg, unix_socket, 65536);
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->WriteOpFor(1 << 20), WriteOp::kSend);
  EXPECT_THAT(plan->detail, Not(HasSubstr("SEND_ZC")));
}

TEST(ChooseDataPathTest, NoAutoBufRegMeansCopy) {
  // trixie's 6.12: the socket ops work, the ublk driver cannot register.
  auto plan = ChooseDataPath(DataPathMode::kAuto, 0x1fe, NoSendRecvFlag());
  ASSERT_THAT(plan, IsOk());
  EXPECT_FALSE(plan->zero_copy);
  EXPECT_THAT(plan->detail, HasSubstr("UBLK_F_AUTO_BUF_REG"));
  auto refused = ChooseDataPath(DataPathMode::kZeroCopy, 0x1fe, NoSendRecvFlag());
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition,
                                HasSubstr("UBLK_F_AUTO_BUF_REG")));
  EXPECT_EQ(RemedyOf(refused.status()), Remedy::kUseCopyDataPath);
}

TEST(ChooseDataPathTest, SupportZeroCopyWithoutAutoBufRegRegistersPerRequest) {
  // 6.15: REGISTER_IO_BUF, but no auto registration; the socket ops of
  // 6.15 to 7.1.
  constexpr uint64_t k615 = 0x7fe | ublk::kFSupportZeroCopy;
  auto plan = ChooseDataPath(DataPathMode::kAuto, k615, NoSendRecvFlag(), {}, true);
  ASSERT_THAT(plan, IsOk());
  EXPECT_TRUE(plan->zero_copy);
  EXPECT_EQ(plan->registration, BufferRegistration::kExplicit);
  EXPECT_EQ(plan->WriteOpFor(4096), WriteOp::kWriteFixed);
  EXPECT_EQ(plan->read, ReadOp::kReadFixed);
  EXPECT_THAT(plan->detail, HasSubstr("REGISTER_IO_BUF"));
  // Where the driver offers both, it registers: one op fewer per request.
  auto both = ChooseDataPath(DataPathMode::kAuto, k615 | kAutoBufReg, Everything());
  ASSERT_THAT(both, IsOk());
  EXPECT_EQ(both->registration, BufferRegistration::kAuto);
  EXPECT_THAT(both->detail, HasSubstr("registered by the driver"));
}

TEST(ChooseDataPathTest, RulingOutUblkFeaturesChoosesLikeOlderDrivers) {
  auto no_auto = ParseUblkFeatures("auto-buf-reg");
  ASSERT_THAT(no_auto, IsOkAndHolds(ublk::kFAutoBufReg));
  constexpr uint64_t k72 = 0xfffff;  // sid's 7.2
  auto plan = ChooseDataPath(DataPathMode::kAuto, k72 & ~*no_auto, Everything());
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->registration, BufferRegistration::kExplicit);
  auto neither = ParseUblkFeatures("UBLK_F_AUTO_BUF_REG,zero-copy");
  ASSERT_THAT(neither, IsOkAndHolds(ublk::kFAutoBufReg | ublk::kFSupportZeroCopy));
  auto copy = ChooseDataPath(DataPathMode::kAuto, k72 & ~*neither, Everything());
  ASSERT_THAT(copy, IsOk());
  EXPECT_FALSE(copy->zero_copy);
  EXPECT_THAT(ParseUblkFeatures(""), IsOkAndHolds(0u));
  EXPECT_THAT(ParseUblkFeatures("user-recovery"),
              IsOkAndHolds(ublk::kFUserRecovery | ublk::kFUserRecoveryReissue));
  EXPECT_THAT(ParseUblkFeatures("user-recovery,quiesce"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'quiesce'"), HasSubstr("auto-buf-reg"),
                             HasSubstr("user-recovery"))));
}

TEST(ChooseDataPathTest, NoWayToReceiveIntoAFixedBufferMeansCopy) {
  FixedBufferSupport s = Everything();
  s.recv = s.read_fixed = false;
  auto plan = ChooseDataPath(DataPathMode::kAuto, kAutoBufReg, s);
  ASSERT_THAT(plan, IsOk());
  EXPECT_FALSE(plan->zero_copy);
  EXPECT_THAT(plan->detail, HasSubstr("RECV and READ_FIXED"));
  EXPECT_THAT(ChooseDataPath(DataPathMode::kZeroCopy, kAutoBufReg, s),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("receives")));
}

TEST(ChooseDataPathTest, NoWayToSendFromAFixedBufferMeansCopy) {
  FixedBufferSupport s = Everything();
  s.send = s.send_zc = s.write_fixed = false;
  EXPECT_THAT(ChooseDataPath(DataPathMode::kZeroCopy, kAutoBufReg, s),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("sends")));
}

TEST(ChooseDataPathTest, CopyIsAlwaysPossible) {
  auto plan = ChooseDataPath(DataPathMode::kCopy, kAutoBufReg, Everything());
  ASSERT_THAT(plan, IsOk());
  EXPECT_FALSE(plan->zero_copy);
  EXPECT_EQ(plan->detail, "copy (asked for)");
}

// A kernel carrying ublkgw's kernel/ series: the driver's fused command,
// io_uring's opcode, and mainline's zero copy besides.
constexpr uint64_t kFused = ublk::kFFusedCmd | ublk::kFSupportZeroCopy | ublk::kFAutoBufReg;
FixedBufferSupport EverythingFused() {
  FixedBufferSupport s = Everything();
  s.fused_cmd = true;
  return s;
}

TEST(ChooseDataPathTest, AutoTakesTheFusedPathWhereTheKernelOffersIt) {
  auto plan = ChooseDataPath(DataPathMode::kAuto, kFused, EverythingFused());
  ASSERT_THAT(plan, IsOk());
  EXPECT_TRUE(plan->zero_copy);
  EXPECT_EQ(plan->registration, BufferRegistration::kFused);
  EXPECT_EQ(plan->WriteOpFor(1 << 20), WriteOp::kSend);
  EXPECT_EQ(plan->read, ReadOp::kRecv);
  EXPECT_THAT(plan->detail, HasSubstr("fused"));
  EXPECT_EQ(DeviceFlags(*plan), ublk::kFSupportZeroCopy | ublk::kFFusedCmd);
  // Asked for by name, likewise; zero copy by name stays mainline's.
  auto asked = ChooseDataPath(DataPathMode::kFused, kFused, EverythingFused());
  ASSERT_THAT(asked, IsOk());
  EXPECT_EQ(asked->registration, BufferRegistration::kFused);
  auto zero_copy = ChooseDataPath(DataPathMode::kZeroCopy, kFused, EverythingFused());
  ASSERT_THAT(zero_copy, IsOk());
  EXPECT_EQ(zero_copy->registration, BufferRegistration::kAuto);
}

TEST(ChooseDataPathTest, TheFusedPathNeedsTheDriverAndIoUringBoth) {
  // Each piece missing: auto falls back to zero copy, fused by name is a
  // clear refusal that names the piece and the way out.
  FixedBufferSupport no_opcode = EverythingFused();
  no_opcode.fused_cmd = false;
  const struct {
    uint64_t features;
    FixedBufferSupport probe;
    const char* missing;
  } cases[] = {
      {kFused & ~ublk::kFFusedCmd, EverythingFused(), "UBLK_F_FUSED_CMD"},
      {kFused & ~ublk::kFSupportZeroCopy, EverythingFused(), "UBLK_F_FUSED_CMD"},
      {kFused, no_opcode, "IORING_OP_FUSED_CMD"},
  };
  for (const auto& c : cases) {
    auto fallback = ChooseDataPath(DataPathMode::kAuto, c.features, c.probe);
    ASSERT_THAT(fallback, IsOk());
    EXPECT_TRUE(fallback->zero_copy) << c.missing;
    EXPECT_NE(fallback->registration, BufferRegistration::kFused) << c.missing;
    auto refused = ChooseDataPath(DataPathMode::kFused, c.features, c.probe);
    EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition,
                                  AllOf(HasSubstr(c.missing), HasSubstr("kernel/"))));
    EXPECT_EQ(RemedyOf(refused.status()), Remedy::kUseZeroCopyDataPath);
  }
  // No socket op either way: the slaves would have nothing to run.
  FixedBufferSupport no_recv = EverythingFused();
  no_recv.recv = no_recv.read_fixed = false;
  auto no_ops = ChooseDataPath(DataPathMode::kFused, kFused, no_recv);
  EXPECT_THAT(no_ops, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("receives")));
  EXPECT_EQ(RemedyOf(no_ops.status()), Remedy::kAllowSocketOps);
}

TEST(ChooseDataPathTest, RulingOutTheFusedCommandChoosesMainlineZeroCopy) {
  auto mask = ParseUblkFeatures("fused");
  ASSERT_THAT(mask, IsOkAndHolds(ublk::kFFusedCmd));
  EXPECT_THAT(ParseUblkFeatures("UBLK_F_FUSED_CMD"), IsOkAndHolds(ublk::kFFusedCmd));
  auto plan = ChooseDataPath(DataPathMode::kAuto, kFused & ~*mask, EverythingFused());
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->registration, BufferRegistration::kAuto);
}

// A restarted daemon serves a device the way it was made: a fused device
// on a kernel whose io_uring has no fused command (this host's) is a clear
// refusal, never zero copy behind the device's back.
TEST(PlanForDeviceTest, AFusedDeviceNeedsTheFusedCommand) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  auto probe = CachedProbe(AF_UNIX);
  ASSERT_THAT(probe, IsOk());
  if (probe->fused_cmd) GTEST_SKIP() << "this kernel has IORING_OP_FUSED_CMD";
  auto plan = PlanForDevice(kFused, {}, ublk::kFSupportZeroCopy | ublk::kFFusedCmd, sv[0]);
  EXPECT_THAT(plan, StatusIs(absl::StatusCode::kFailedPrecondition,
                             AllOf(HasSubstr("cannot serve it"), HasSubstr("IORING_OP_FUSED_CMD"))));
  // A device with mainline's zero copy is still served so.
  auto zero_copy = PlanForDevice(kFused, {}, ublk::kFAutoBufReg, sv[0]);
  if (probe->send && probe->recv) {
    ASSERT_THAT(zero_copy, IsOk());
    EXPECT_EQ(zero_copy->registration, BufferRegistration::kAuto);
  }
  close(sv[0]);
  close(sv[1]);
}

// UBLK_F_BATCH_IO when the operator asks for it (--batch-io) and the
// driver offers it, on the copy path and on driver-registered zero copy;
// a device made with it is served with it (and one made without,
// without), whatever this daemon's features and options say.
TEST(PlanDataPathTest, BatchedCommandsWhereAskedForAndOffered) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  DataPathTuning batch;
  batch.batch_io = true;
  auto by_default = PlanDataPath(DataPathMode::kCopy, ublk::kFBatchIo, {}, sv[0]);
  ASSERT_THAT(by_default, IsOk());
  EXPECT_FALSE(by_default->batch);
  auto copy = PlanDataPath(DataPathMode::kCopy, ublk::kFBatchIo, batch, sv[0]);
  ASSERT_THAT(copy, IsOk());
  EXPECT_TRUE(copy->batch);
  EXPECT_THAT(copy->detail, HasSubstr("UBLK_F_BATCH_IO"));
  EXPECT_EQ(DeviceFlags(*copy), ublk::kFBatchIo);
  auto without = PlanDataPath(DataPathMode::kCopy, 0, batch, sv[0]);
  ASSERT_THAT(without, IsOk());
  EXPECT_FALSE(without->batch);
  EXPECT_EQ(DeviceFlags(*without), 0u);
  EXPECT_THAT(ParseUblkFeatures("batch-io"), IsOkAndHolds(ublk::kFBatchIo));
  EXPECT_THAT(ParseUblkFeatures("UBLK_F_BATCH_IO"), IsOkAndHolds(ublk::kFBatchIo));

  // Restarted: the device's flags decide.
  auto served = PlanForDevice(0, {}, ublk::kFBatchIo, sv[0]);
  ASSERT_THAT(served, IsOk());
  EXPECT_TRUE(served->batch);
  auto per_tag = PlanForDevice(ublk::kFBatchIo, {}, 0, sv[0]);
  ASSERT_THAT(per_tag, IsOk());
  EXPECT_FALSE(per_tag->batch);
  close(sv[0]);
  close(sv[1]);
}

TEST(PlanDataPathTest, NoBatchesWithRegisterIoBufOrTheFusedPath) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  auto probe = CachedProbe(AF_UNIX);
  ASSERT_THAT(probe, IsOk());
  if (!(probe->write_fixed && probe->read_fixed)) GTEST_SKIP() << probe->detail;
  // REGISTER_IO_BUF (no UBLK_F_AUTO_BUF_REG): per-tag commands.
  DataPathTuning batch;
  batch.batch_io = true;
  auto explicit_reg = PlanDataPath(DataPathMode::kZeroCopy,
                                   ublk::kFSupportZeroCopy | ublk::kFBatchIo, batch, sv[0]);
  ASSERT_THAT(explicit_reg, IsOk());
  EXPECT_EQ(explicit_reg->registration, BufferRegistration::kExplicit);
  EXPECT_FALSE(explicit_reg->batch);
  // Driver registration: batched.
  auto auto_reg =
      PlanDataPath(DataPathMode::kZeroCopy, kAutoBufReg | ublk::kFBatchIo, batch, sv[0]);
  ASSERT_THAT(auto_reg, IsOk());
  EXPECT_TRUE(auto_reg->batch);
  EXPECT_EQ(DeviceFlags(*auto_reg), kAutoBufReg | ublk::kFBatchIo);
  // A device with both that this daemon would serve per request is refused.
  auto refused = PlanForDevice(ublk::kFSupportZeroCopy, {},
                               ublk::kFSupportZeroCopy | ublk::kFBatchIo, sv[0]);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("UBLK_F_BATCH_IO")));
  close(sv[0]);
  close(sv[1]);
}

TEST(PeerIsLocalTest, LoopbackIsLocalAndAnUnconnectedSocketIsNot) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), len), 0);
  ASSERT_EQ(listen(listener, 1), 0);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  int client = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_FALSE(PeerIsLocal(client));  // no peer yet
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&addr), len), 0);
  EXPECT_TRUE(PeerIsLocal(client));
  close(client);
  close(listener);
}

TEST(SocketOpsTest, DisablingSendAndRecvChoosesLikeOlderKernels) {
  auto disabled = ParseSocketOps("send,recv");
  ASSERT_THAT(disabled, IsOk());
  auto plan = ChooseDataPath(DataPathMode::kAuto, kAutoBufReg, WithoutOps(Everything(), *disabled),
                             {}, true);
  ASSERT_THAT(plan, IsOk());
  EXPECT_TRUE(plan->zero_copy);
  EXPECT_EQ(plan->WriteOpFor(4096), WriteOp::kWriteFixed);
  EXPECT_EQ(plan->WriteOpFor(1 << 20), WriteOp::kWriteFixed);  // local: no SEND_ZC
  EXPECT_EQ(plan->read, ReadOp::kReadFixed);
  EXPECT_THAT(ParseSocketOps(""), IsOk());
  EXPECT_THAT(ParseSocketOps("send,bogus"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'bogus'")));
}

TEST(CachedProbeTest, AnswersLikeTheProbeAndKnowsTheFamily) {
  auto cached = CachedProbe(AF_INET);
  auto fresh = ProbeFixedBuffers(AF_INET);
  ASSERT_THAT(cached, IsOk());
  ASSERT_THAT(fresh, IsOk());
  EXPECT_EQ(cached->send_zc, fresh->send_zc);
  EXPECT_EQ(cached->recv, fresh->recv);
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  EXPECT_THAT(SocketFamily(fds[0]), IsOkAndHolds(AF_UNIX));
  EXPECT_TRUE(PeerIsLocal(fds[0]));
  close(fds[0]);
  close(fds[1]);
}

}  // namespace
}  // namespace ublkgw::engine
