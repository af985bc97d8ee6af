// The real engine::Device on the host: a fake ublk driver (fake_ublk_driver.h)
// in place of the kernel, scripted NBD servers in place of the export. Each
// test checks what the kernel would be told and what the caller gets back.
#include "engine/device.h"

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "engine/fake_ublk_driver.h"
#include "engine/request_mapping.h"
#include "engine/worker_harness.h"
#include "engine/worker_scripts.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw::engine {
namespace {

using nbd::testing::FakeServer;
using testing::FakeUblk;
using testing::FakeUblkDriver;
using ::testing::HasSubstr;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::StatusIs;
using namespace testing::scripts;  // NOLINT: the tests' vocabulary

constexpr uint16_t kDepth = 4;
constexpr uint32_t kMaxIo = 64 * 1024;

class DeviceTest : public ::testing::Test {
 protected:
  // An export of `queues` connections, each served by `script`.
  ConnectedExport Connect(int queues, testing::Script script = Honest) {
    ConnectedExport c;
    c.uri = "nbd+unix:///?socket=/nonexistent/ublkgw-device-test";  // no reconnecting
    c.info = testing::TestExport();
    c.max_io = kMaxIo;
    c.params = *ParamsForExport(c.info, kMaxIo, /*read_only=*/false);
    for (int q = 0; q < queues; ++q) {
      servers_.push_back(std::make_unique<FakeServer>(script));
      c.sockets.push_back(servers_.back()->TakeClientStream().Release());
    }
    return c;
  }
  AttachOptions Options() const {
    AttachOptions o;
    o.depth = kDepth;
    o.data_path = DataPathMode::kCopy;
    o.reconnect.reconnect_deadline = absl::ZeroDuration();  // a lost server fails I/O
    return o;
  }
  absl::StatusOr<std::unique_ptr<Device>> Create(const AttachOptions& o, ConnectedExport c) {
    return Device::Create(std::make_unique<FakeUblkDriver>(ublk_), o, std::move(c));
  }

  // Declared first: they outlive the devices that talk to them.
  std::vector<std::unique_ptr<FakeServer>> servers_;
  std::shared_ptr<FakeUblk> ublk_ = std::make_shared<FakeUblk>();
};

TEST_F(DeviceTest, ServesEveryQueueAndDetaches) {
  auto device = Create(Options(), Connect(2));
  ASSERT_THAT(device.status(), IsOk());
  EXPECT_EQ((*device)->queues(), 2);
  EXPECT_EQ((*device)->block_path(), "/dev/ublkb0");
  EXPECT_TRUE(ublk_->started);
  EXPECT_EQ(ublk_->info.nr_hw_queues, 2);
  EXPECT_EQ(ublk_->info.queue_depth, kDepth);
  for (uint16_t q = 0; q < 2; ++q) {
    ASSERT_TRUE(ublk_->queue(q).Issue(1, kRead, q * 8192, 4096));
    auto c = ublk_->queue(q).WaitCommit(1);
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(c->result, 4096);
    EXPECT_TRUE(c->data == Expected(q * 8192, 4096));
  }
  EXPECT_EQ((*device)->Stats().of(OpKind::kRead).ops, 2u);
  EXPECT_EQ((*device)->Health().link, Link::kUp);
  EXPECT_THAT((*device)->Detach(/*force=*/false), IsOk());
  EXPECT_TRUE(ublk_->stopped);
  EXPECT_TRUE(ublk_->deleted);
  EXPECT_FALSE(ublk_->queues_open);
}

// On a host with fewer CPUs than queues asked for, the driver makes one
// queue per CPU (found booting a 1-CPU guest: mapping queue 1's
// descriptors failed with EINVAL and the attach with it). The device
// serves the queues it got and says why it has fewer.
TEST_F(DeviceTest, FewerQueuesThanAskedAreServedAndNamed) {
  ublk_->cpus = 1;
  auto device = Create(Options(), Connect(2));
  ASSERT_THAT(device.status(), IsOk());
  EXPECT_EQ((*device)->queues(), 1);
  EXPECT_THAT((*device)->note(), HasSubstr("1 queue(s), not the 2 asked for"));
  ASSERT_TRUE(ublk_->queue(0).Issue(1, kRead, 8192, 4096));
  auto c = ublk_->queue(0).WaitCommit(1);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->result, 4096);
  EXPECT_THAT((*device)->Detach(/*force=*/false), IsOk());
  EXPECT_TRUE(ublk_->deleted);
}

TEST_F(DeviceTest, AnIdAlreadyTakenGivesTheLowestFreeOneNotReserved) {
  ublk_->taken_ids = {0, 5};
  AttachOptions o = Options();
  o.device_id = 5;
  o.reserved_ids = {1};
  auto device = Create(o, Connect(1));
  ASSERT_THAT(device.status(), IsOk());
  EXPECT_EQ((*device)->id(), 2u);
}

TEST_F(DeviceTest, ParametersTheKernelRefusesAreNamedAndLeaveNoDevice) {
  ublk_->fail["SET_PARAMS"] = absl::InvalidArgumentError("UBLK_U_CMD_SET_PARAMS: Invalid argument");
  auto device = Create(Options(), Connect(1));
  EXPECT_THAT(device.status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(device.status().message()), HasSubstr("max_sectors"));
  EXPECT_TRUE(ublk_->deleted);
  EXPECT_FALSE(ublk_->started);
}

TEST_F(DeviceTest, AFailedStartDeletesTheDevice) {
  ublk_->fail["START_DEV"] = absl::UnavailableError("no");
  auto device = Create(Options(), Connect(1));
  EXPECT_THAT(device.status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(ublk_->deleted);
  EXPECT_FALSE(ublk_->queues_open);
}

// The hole: a STOP_DEV the kernel refuses left the queues fetching, so the
// detach joined them for ever with the control plane held. Now the queues
// are told to exit (the kernel fails what they held when /dev/ublkcN
// closes), and the device is deleted.
TEST_F(DeviceTest, ADetachWhoseStopDevFailsStillEnds) {
  auto device = Create(Options(), Connect(1, Silent));
  ASSERT_THAT(device.status(), IsOk());
  ASSERT_TRUE(ublk_->queue(0).Issue(0, kRead, 0, 4096));
  ublk_->fail["STOP_DEV"] = absl::InternalError("UBLK_U_CMD_STOP_DEV: Input/output error");
  const absl::Time start = absl::Now();
  EXPECT_THAT((*device)->Detach(/*force=*/false), StatusIs(absl::StatusCode::kInternal));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_FALSE(ublk_->queues_open);
  EXPECT_TRUE(ublk_->deleted);
  EXPECT_EQ((*device)->queues(), 0) << "queue workers outlived the detach";
}

TEST_F(DeviceTest, AForcedDetachFailsWhatASilentServerHolds) {
  auto device = Create(Options(), Connect(1, Silent));
  ASSERT_THAT(device.status(), IsOk());
  ASSERT_TRUE(ublk_->queue(0).Issue(2, kWrite, 0, 4096, Fill(4096, 'w')));
  const absl::Time start = absl::Now();
  EXPECT_THAT((*device)->Detach(/*force=*/true), IsOk());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  auto c = ublk_->queue(0).WaitCommit(2);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->result, -EIO);
  EXPECT_TRUE(ublk_->deleted);
}

TEST_F(DeviceTest, ARecordedVolumesDeviceOutlivesTheDaemonAndLeaves) {
  AttachOptions o = Options();
  o.outlive_daemon = true;
  o.device_cookie = 0x1234;
  auto device = Create(o, Connect(1));
  ASSERT_THAT(device.status(), IsOk());
  EXPECT_TRUE((*device)->recoverable());
  EXPECT_EQ(ublk_->info.ublksrv_flags, 0x1234u);
  EXPECT_NE(ublk_->info.flags & ublk::kFUserRecoveryReissue, 0u);
  EXPECT_THAT((*device)->Leave(), IsOk());
  EXPECT_FALSE(ublk_->stopped) << "a device left for the next daemon was stopped";
  EXPECT_FALSE(ublk_->deleted);
  EXPECT_FALSE(ublk_->queues_open);
}

TEST_F(DeviceTest, ADeviceWithoutRecoverySaysWhyAndCannotLeave) {
  ublk_->features = 0;
  AttachOptions o = Options();
  o.outlive_daemon = true;
  o.device_cookie = 7;
  auto device = Create(o, Connect(1));
  ASSERT_THAT(device.status(), IsOk());
  EXPECT_FALSE((*device)->recoverable());
  EXPECT_THAT((*device)->note(), HasSubstr("lacks user recovery"));
  EXPECT_THAT((*device)->Leave(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(DeviceTest, RecoveryRuledOutByTheOperatorIsNamed) {
  AttachOptions o = Options();
  o.outlive_daemon = true;
  o.device_cookie = 7;
  o.tuning.disabled_ublk_features = ublk::kFUserRecovery | ublk::kFUserRecoveryReissue;
  auto device = Create(o, Connect(1));
  ASSERT_THAT(device.status(), IsOk());
  EXPECT_THAT((*device)->note(), HasSubstr("user recovery is ruled out by the operator"));
  EXPECT_EQ((*device)->note_remedy(), Remedy::kAllowUserRecovery);
}

// A device the previous daemon left: Adopt checks it is this volume's, then
// serves it with fresh queues.
class AdoptTest : public DeviceTest {
 protected:
  void SetUp() override {
    ublk_->added = true;
    ublk_->info.dev_id = 3;
    ublk_->info.nr_hw_queues = 1;
    ublk_->info.queue_depth = kDepth;
    ublk_->info.max_io_buf_bytes = kMaxIo;
    ublk_->info.flags = ublk::kFUserRecovery | ublk::kFUserRecoveryReissue;
    ublk_->info.ublksrv_flags = 0xfeed;
    ublk_->params = *ParamsForExport(testing::TestExport(), kMaxIo, false);
  }
  AttachOptions AdoptOptions(uint64_t cookie = 0xfeed) const {
    AttachOptions o = Options();
    o.device_id = 3;
    o.device_cookie = cookie;
    return o;
  }
  absl::StatusOr<std::unique_ptr<Device>> Adopt(const AttachOptions& o, ConnectedExport c) {
    return Device::Adopt(std::make_unique<FakeUblkDriver>(ublk_), o, std::move(c));
  }
};

TEST_F(AdoptTest, TakesOverTheDeviceAndServesIt) {
  auto device = Adopt(AdoptOptions(), Connect(1));
  ASSERT_THAT(device.status(), IsOk());
  EXPECT_EQ((*device)->id(), 3u);
  EXPECT_TRUE((*device)->recoverable());
  EXPECT_EQ((*device)->size(), uint64_t{1} << 20);
  ASSERT_TRUE(ublk_->queue(0).Issue(0, kRead, 4096, 4096));
  auto c = ublk_->queue(0).WaitCommit(0);
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->data == Expected(4096, 4096));
}

TEST_F(AdoptTest, RefusesADeviceMarkedForAnotherVolume) {
  EXPECT_THAT(Adopt(AdoptOptions(0xbad), Connect(1)).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(Adopt(AdoptOptions(0), Connect(1)).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(AdoptTest, RefusesAServerThatGivesOtherQueuesOrLess) {
  EXPECT_THAT(Adopt(AdoptOptions(), Connect(2)).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ConnectedExport smaller = Connect(1);
  smaller.info.size = 1 << 19;
  EXPECT_THAT(Adopt(AdoptOptions(), std::move(smaller)).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(AdoptTest, WaitsWhileTheOldDaemonStillHoldsTheDevice) {
  ublk_->fail["START_USER_RECOVERY"] = absl::UnavailableError("EBUSY");
  EXPECT_THAT(Adopt(AdoptOptions(), Connect(1)).status(),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(ublk_->deleted) << "a device that waits for its server was deleted";
}

TEST_F(DeviceTest, ResizeShrinksAndGrowsBackWithinTheConnectionsSize) {
  auto device = Create(Options(), Connect(1));
  ASSERT_THAT(device.status(), IsOk());
  EXPECT_THAT((*device)->Resize(512 * 1024), IsOk());
  EXPECT_EQ(ublk_->sectors, 1024u);
  EXPECT_EQ((*device)->size(), 512u * 1024);
  // A request past the new end is refused by the worker too.
  ASSERT_TRUE(ublk_->queue(0).Issue(0, kRead, 600 * 1024, 4096));
  auto c = ublk_->queue(0).WaitCommit(0);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->result, -EINVAL);
  EXPECT_THAT((*device)->Resize(1 << 20), IsOk());
  EXPECT_EQ(ublk_->sectors, 2048u);
  EXPECT_THAT((*device)->Resize(1000), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(DeviceTest, ResizeNeedsTheKernelsUpdateSize) {
  ublk_->features = 0;
  auto device = Create(Options(), Connect(1));
  ASSERT_THAT(device.status(), IsOk());
  EXPECT_THAT((*device)->Resize(512 * 1024), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(DeviceTest, AResizeTheKernelRefusesKeepsTheOldSize) {
  auto device = Create(Options(), Connect(1));
  ASSERT_THAT(device.status(), IsOk());
  ublk_->fail["UPDATE_SIZE"] = absl::InvalidArgumentError("no");
  EXPECT_THAT((*device)->Resize(512 * 1024), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ((*device)->size(), uint64_t{1} << 20);
  ASSERT_TRUE(ublk_->queue(0).Issue(0, kRead, 600 * 1024, 4096));
  auto c = ublk_->queue(0).WaitCommit(0);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->result, 4096);
}

TEST_F(DeviceTest, HealthNamesTheQueueThatLostItsServer) {
  auto device = Create(Options(), Connect(1, [](FakePeer& peer) {
    Req r;
    ReadReq(peer, &r);  // then hangs up
  }));
  ASSERT_THAT(device.status(), IsOk());
  ASSERT_TRUE(ublk_->queue(0).Issue(0, kRead, 0, 4096));
  auto c = ublk_->queue(0).WaitCommit(0);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->result, -EIO);
  const Device::LinkHealth health = (*device)->Health();
  EXPECT_EQ(health.link, Link::kFailingIo);
  EXPECT_THAT(health.problem, HasSubstr("queue 0: "));
}

}  // namespace
}  // namespace ublkgw::engine
