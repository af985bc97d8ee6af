// The real queue worker on its zero-copy path, on the host: the fake ublk
// kernel lends a buffer of its own per tag as the request's pages, in slot
// `tag` of the worker's fixed-buffer table, and every payload moves
// between that slot and the socket through fixed-buffer ops. Each socket
// op the worker may use is run where the host kernel performs it on this
// socket type (ProbeFixedBuffers), and skipped, saying so, where not.
// Every test runs twice: with the pages in the table (UBLK_F_AUTO_BUF_REG)
// and fused, each op lent them as a fused command's slave (the fake checks
// each op as the patched kernel would, then runs it on the table slot).
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <tuple>

#include "engine/data_path_probe.h"
#include "engine/worker_harness.h"
#include "engine/worker_scripts.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw::engine {
namespace {

using testing::WorkerHarness;
using ::ublkgw::testing::IsOk;
using namespace testing::scripts;  // NOLINT: the tests' vocabulary

const FixedBufferSupport& Support() {
  static const FixedBufferSupport support = [] {
    auto probed = ProbeFixedBuffers(AF_UNIX);  // the harness's sockets
    return probed.ok() ? *probed : FixedBufferSupport{};
  }();
  return support;
}

bool Supported(WriteOp op) {
  switch (op) {
    case WriteOp::kSend:
      return Support().send;
    case WriteOp::kSendZc:
      return Support().send_zc;
    case WriteOp::kWriteFixed:
      return Support().write_fixed;
  }
  return false;
}
bool Supported(ReadOp op) {
  return op == ReadOp::kRecv ? Support().recv : Support().read_fixed;
}

class ZeroCopyTest
    : public ::testing::TestWithParam<std::tuple<WriteOp, ReadOp, BufferRegistration>> {
 protected:
  void SetUp() override {
    const auto [write, read, registration] = GetParam();
    if (!Supported(write) || !Supported(read)) {
      GTEST_SKIP() << "the host kernel does not perform this pair of fixed-buffer ops on a "
                      "unix socket: "
                   << Support().detail;
    }
  }

  WorkerHarness::Options Options(nbd::HeaderMode mode = nbd::HeaderMode::kSimple) const {
    const auto [write, read, registration] = GetParam();
    WorkerHarness::Options options;
    options.info = testing::TestExport(mode);
    options.plan.zero_copy = true;
    options.plan.registration = registration;
    options.plan.small_write = options.plan.large_write = write;
    options.plan.read = read;
    return options;
  }
};

TEST_P(ZeroCopyTest, ReadsAndWritesMoveThroughTheRequestsPages) {
  std::string written;
  WorkerHarness h(Recording(&written), Options());
  ASSERT_THAT(h.ready(), IsOk());
  std::string data;
  for (int i = 0; i < 16384; ++i) data.push_back(static_cast<char>('A' + i % 23));
  auto w = h.Do(0, kWrite, 8192, 16384, data);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->result, 16384);
  EXPECT_TRUE(written == data) << "the server got other bytes than the request's pages held";
  auto r = h.Do(1, kRead, 40960, 32768);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, 32768);
  EXPECT_TRUE(r->data == Expected(40960, 32768));
}

// Chunks out of order and a hole: each chunk is received into the pages
// at its offset, and the hole is zeroed in place (from /dev/zero).
TEST_P(ZeroCopyTest, StructuredChunksLandAtTheirOffsetsAndHolesAreZeroed) {
  WorkerHarness h(
      [](FakePeer& peer) {
        Req r;
        ASSERT_TRUE(ReadReq(peer, &r));
        peer.Chunk(0, nbd::kReplyTypeOffsetData, r.cookie,
                   DataChunk(r.offset + 6144, Fill(2048, 'd')));
        peer.Chunk(0, nbd::kReplyTypeOffsetHole, r.cookie,
                   nbd::ByteWriter().Put(r.offset + 1024).Put(uint32_t{5120}).Take());
        peer.Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetData, r.cookie,
                   DataChunk(r.offset, Fill(1024, 'a')));
        Honest(peer);
      },
      Options(nbd::HeaderMode::kStructured));
  ASSERT_THAT(h.ready(), IsOk());
  auto r = h.Do(3, kRead, 4096, 8192);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, 8192);
  EXPECT_TRUE(r->data == Fill(1024, 'a') + std::string(5120, '\0') + Fill(2048, 'd'));
}

// As on the copy path (queue_worker_test): the first chunk's payload is
// received into the pages, and then the ACK goes at once.
TEST_P(ZeroCopyTest, AReplyInPartsIsAcknowledgedAtOnce) {
  ExpectAReplyInPartsAcknowledgedAtOnce(Options(nbd::HeaderMode::kStructured));
}

// A request of 2 MiB (the daemon's requests reach 1 MiB, the encoding of
// a hole's zero fill 4 MiB): a hole past the first MiB, and one ending at
// the request's end, are zeroed exactly where they are. When a fill's
// offset and length had 20 bits each, such requests were refused.
TEST_P(ZeroCopyTest, HolesBeyondTheFirstMebibyteAreZeroedWhereTheyAre) {
  static constexpr uint32_t kLen = 2 << 20;
  static constexpr uint32_t kMiB = 1 << 20;
  WorkerHarness::Options options = Options(nbd::HeaderMode::kStructured);
  options.info = testing::TestExport(nbd::HeaderMode::kStructured, 8 << 20);
  options.max_io_bytes = kLen;
  options.depth = 2;
  WorkerHarness h(
      [](FakePeer& peer) {
        Req r;
        ASSERT_TRUE(ReadReq(peer, &r));
        ASSERT_EQ(r.length, kLen);
        peer.Chunk(0, nbd::kReplyTypeOffsetData, r.cookie,
                   DataChunk(r.offset, Fill(kMiB + 512, 'a')));
        peer.Chunk(0, nbd::kReplyTypeOffsetHole, r.cookie,
                   nbd::ByteWriter().Put(r.offset + kMiB + 512).Put(uint32_t{kMiB - 4096}).Take());
        peer.Chunk(0, nbd::kReplyTypeOffsetData, r.cookie,
                   DataChunk(r.offset + 2 * kMiB - 3584, Fill(1024, 'd')));
        peer.Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetHole, r.cookie,
                   nbd::ByteWriter().Put(r.offset + 2 * kMiB - 2560).Put(uint32_t{2560}).Take());
        Honest(peer);
      },
      options);
  ASSERT_THAT(h.ready(), IsOk());
  auto r = h.Do(1, kRead, 4 << 20, kLen);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, static_cast<int32_t>(kLen));
  const std::string want = Fill(kMiB + 512, 'a') + std::string(kMiB - 4096, '\0') +
                           Fill(1024, 'd') + std::string(2560, '\0');
  ASSERT_EQ(want.size(), kLen);
  EXPECT_TRUE(r->data == want) << "first difference at byte "
                               << std::mismatch(want.begin(), want.end(), r->data.begin()).first -
                                      want.begin();
}

// A request larger than a hole's fill can describe is refused when the
// queue starts, not met by a wrong fill later.
TEST_P(ZeroCopyTest, RequestsLargerThanAFillCanDescribeAreRefusedAtStart) {
  WorkerHarness::Options options = Options();
  options.max_io_bytes = (4 << 20) + 4096;
  options.depth = 1;
  WorkerHarness h(Honest, options);
  EXPECT_FALSE(h.ready().ok());
}

// A write larger than the socket takes at once comes up short: the rest
// goes from where it stopped, and the server gets every byte in order.
TEST_P(ZeroCopyTest, AShortSendGoesOnFromWhereItStopped) {
  WorkerHarness::Options options = Options();
  options.send_buffer = 4096;
  std::string written;
  WorkerHarness h(Recording(&written), options);
  ASSERT_THAT(h.ready(), IsOk());
  std::string data;
  for (int i = 0; i < 65536; ++i) data.push_back(static_cast<char>(i * 7 % 251));
  auto w = h.Do(2, kWrite, 0, 65536, data);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->result, 65536);
  EXPECT_TRUE(written == data);
}

// The connection fails with a read's payload half received into the pages
// and a write unanswered: both go again on the next connection, and the
// read's pages end up holding the right bytes.
TEST_P(ZeroCopyTest, AReconnectSendsAgainWhatHadNoReply) {
  WorkerHarness::Options options = Options();
  options.reconnect_scripts.push_back(Honest);
  WorkerHarness h(
      [](FakePeer& peer) {
        Req a, b;
        ASSERT_TRUE(ReadReqAndPayload(peer, &a));
        ASSERT_TRUE(ReadReqAndPayload(peer, &b));
        const Req& read = a.type == nbd::kCmdRead ? a : b;
        peer.SimpleReply(0, read.cookie, Fill(read.length / 2, 'X'));  // and hangs up
      },
      options);
  ASSERT_THAT(h.ready(), IsOk());
  ASSERT_TRUE(h.kernel().Issue(0, kRead, 4096, 8192));
  ASSERT_TRUE(h.kernel().Issue(1, kWrite, 0, 4096, Fill(4096, 'w')));
  auto r = h.kernel().WaitCommit(0);
  auto w = h.kernel().WaitCommit(1);
  ASSERT_TRUE(r && w);
  EXPECT_EQ(r->result, 8192);
  EXPECT_TRUE(r->data == Expected(4096, 8192));
  EXPECT_EQ(w->result, 4096);
  EXPECT_EQ(h.connects(), 1);
}

// While a read may be answered, each RECV asks for exactly one element of
// a reply: a structured read's header, its data chunk's offset, and its
// data (into the pages). Asking for the header and offset at once made
// fewer RECVs but slower reads (docs/BENCHMARKS.md).
TEST_P(ZeroCopyTest, AStructuredReadTakesOneRecvPerElement) {
  WorkerHarness h(HonestStructured, Options(nbd::HeaderMode::kStructured));
  ASSERT_THAT(h.ready(), IsOk());
  ASSERT_TRUE(testing::WaitFor([&h] { return testing::Recvs(h) == 1; }));  // armed at the start
  const uint64_t before = testing::Recvs(h);
  constexpr int kReads = 8;
  for (int i = 0; i < kReads; ++i) {
    auto r = h.Do(static_cast<uint16_t>(i % 4), kRead, uint64_t{4096} * i, 4096);
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->result, 4096);
    ASSERT_TRUE(r->data == Expected(uint64_t{4096} * i, 4096)) << i;
  }
  // Each read: its header's RECV (armed before it), its offset's and its
  // payload's; the next header's is armed just after its commit.
  EXPECT_TRUE(testing::WaitFor([&] { return testing::Recvs(h) - before == 3u * kReads; }))
      << testing::Recvs(h) - before;
}

// Replies without data, all there at once: while no read waits, one wide
// RECV takes every one of them.
TEST_P(ZeroCopyTest, RepliesWithoutDataShareARecv) {
  WorkerHarness h(AnswersInOneBurst(4), Options());
  ASSERT_THAT(h.ready(), IsOk());
  const uint64_t before = h.worker().stats().Snapshot().recvs;
  for (uint16_t tag = 0; tag < 4; ++tag) {
    ASSERT_TRUE(h.kernel().Issue(tag, kWrite, uint64_t{4096} * tag, 4096, Fill(4096, 'w')));
  }
  for (uint16_t tag = 0; tag < 4; ++tag) {
    auto w = h.kernel().WaitCommit(tag);
    ASSERT_TRUE(w.has_value());
    EXPECT_EQ(w->result, 4096);
  }
  // The first reply into the RECV armed while nothing was in flight (a
  // reply's worth), the other three in one wide RECV, and perhaps the next
  // one armed by now: at most two more, where one per reply made three or
  // four by the last commit.
  EXPECT_LE(h.worker().stats().Snapshot().recvs - before, 2u);
}

// A read issued while a wide RECV waits for write replies: the read is
// held until that RECV is taken back, so its data comes into the
// request's pages and never into staging (where zero copy could only fail
// it). The server answers the read before the write still unanswered.
TEST_P(ZeroCopyTest, AReadWaitsUntilTheWideRecvIsTakenBack) {
  WorkerHarness h(
      [](FakePeer& peer) {
        Req a, b, c;
        ASSERT_TRUE(ReadReqAndPayload(peer, &a));
        ASSERT_TRUE(ReadReqAndPayload(peer, &b));
        peer.SimpleReply(0, a.cookie);
        ASSERT_TRUE(ReadReq(peer, &c));
        ASSERT_EQ(c.type, nbd::kCmdRead);
        peer.SimpleReply(0, c.cookie, Expected(c.offset, c.length));
        peer.SimpleReply(0, b.cookie);
        Honest(peer);
      },
      Options());
  ASSERT_THAT(h.ready(), IsOk());
  ASSERT_TRUE(h.kernel().Issue(0, kWrite, 0, 4096, Fill(4096, 'a')));
  ASSERT_TRUE(h.kernel().Issue(1, kWrite, 4096, 4096, Fill(4096, 'b')));
  // Write 0's reply came while write 1 was unanswered and no read waited:
  // the worker armed a wide RECV in the turn that committed write 0.
  auto a = h.kernel().WaitCommit(0);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->result, 4096);
  ASSERT_TRUE(h.kernel().Issue(2, kRead, 8192, 8192));
  auto r = h.kernel().WaitCommit(2);
  auto b = h.kernel().WaitCommit(1);
  ASSERT_TRUE(r.has_value() && b.has_value());
  EXPECT_EQ(r->result, 8192);
  EXPECT_TRUE(r->data == Expected(8192, 8192));
  EXPECT_EQ(b->result, 4096);
}

// The fused path: every op on the request's pages is a fused command's
// slave, each one what the kernel would take (on the right tag, inside the
// request, in its direction), and none goes without (the fake's table
// holds a tag's pages only from its first fused op to its commit).
TEST_P(ZeroCopyTest, FusedEveryOpOnTheRequestsPagesIsLentThem) {
  if (std::get<2>(GetParam()) != BufferRegistration::kFused) GTEST_SKIP() << "fused only";
  WorkerHarness h(
      [](FakePeer& peer) {
        Req w, r;
        ASSERT_TRUE(ReadReqAndPayload(peer, &w));
        peer.Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeNone, w.cookie, "");
        ASSERT_TRUE(ReadReq(peer, &r));
        peer.Chunk(0, nbd::kReplyTypeOffsetData, r.cookie, DataChunk(r.offset, Fill(4096, 'd')));
        peer.Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetHole, r.cookie,
                   nbd::ByteWriter().Put(r.offset + 4096).Put(uint32_t{4096}).Take());
        Honest(peer);
      },
      Options(nbd::HeaderMode::kStructured));
  ASSERT_THAT(h.ready(), IsOk());
  auto w = h.Do(0, kWrite, 0, 8192, Fill(8192, 'w'));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->result, 8192);
  auto r = h.Do(1, kRead, 8192, 8192);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, 8192);
  EXPECT_TRUE(r->data == Fill(4096, 'd') + std::string(4096, '\0'));
  EXPECT_THAT(h.kernel().fuse_refusals(), ::testing::IsEmpty());
  // The write's payload; the read's data and its hole's zeroes.
  EXPECT_EQ(h.kernel().fused_ops(), 3);
}

std::string Name(
    const ::testing::TestParamInfo<std::tuple<WriteOp, ReadOp, BufferRegistration>>& info) {
  const auto [write, read, registration] = info.param;
  const char* w = write == WriteOp::kSend ? "Send" : write == WriteOp::kSendZc ? "SendZc" : "WriteFixed";
  const char* r = read == ReadOp::kRecv ? "Recv" : "ReadFixed";
  return std::string(registration == BufferRegistration::kFused ? "Fused" : "") + w + r;
}

constexpr auto kTable = BufferRegistration::kAuto;
constexpr auto kFused = BufferRegistration::kFused;
INSTANTIATE_TEST_SUITE_P(
    EveryOp, ZeroCopyTest,
    ::testing::Values(std::make_tuple(WriteOp::kWriteFixed, ReadOp::kReadFixed, kTable),
                      std::make_tuple(WriteOp::kSend, ReadOp::kRecv, kTable),
                      std::make_tuple(WriteOp::kSendZc, ReadOp::kReadFixed, kTable),
                      std::make_tuple(WriteOp::kWriteFixed, ReadOp::kReadFixed, kFused),
                      std::make_tuple(WriteOp::kSend, ReadOp::kRecv, kFused),
                      std::make_tuple(WriteOp::kSendZc, ReadOp::kRecv, kFused)),
    Name);

}  // namespace
}  // namespace ublkgw::engine
