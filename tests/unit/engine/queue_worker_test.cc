// The real queue worker on the host (worker_harness.h): requests from a
// fake ublk queue, replies from a scripted NBD server. Each test breaks one
// rule and checks what the kernel would be told: the committed result and
// the bytes a read leaves in the request's buffer.
#include <cerrno>
#include <string>
#include <vector>

#include "engine/worker_harness.h"
#include "engine/worker_scripts.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbd/bytes.h"
#include "testing/status_matchers.h"

namespace ublkgw::engine {
namespace {

using nbd::testing::FakePeer;
using testing::Commit;
using testing::WorkerHarness;
using ::ublkgw::testing::IsOk;
using namespace testing::scripts;  // NOLINT: the tests' vocabulary

TEST(QueueWorkerTest, ReadsAndWritesCompleteWithTheirData) {
  WorkerHarness h(Honest, {});
  ASSERT_THAT(h.ready(), IsOk());
  auto w = h.Do(0, kWrite, 8192, 4096, Fill(4096, 'w'));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->result, 4096);
  auto r = h.Do(1, kRead, 12288, 8192);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, 8192);
  EXPECT_TRUE(r->data == Expected(12288, 8192));
}

// The same tag used twice: a reply replayed for its first use must never
// complete the second (with simple replies, the READ would get another
// block's data). It is a protocol fault: the connection is dropped, and
// the read sent again on the next one gets its own data.
TEST(QueueWorkerTest, AReplyToAnEarlierUseOfTheTagIsNeverAccepted) {
  WorkerHarness::Options options;
  options.reconnect_scripts.push_back(Honest);
  WorkerHarness h(
      [](FakePeer& peer) {
        Req first, second;
        ASSERT_TRUE(ReadReq(peer, &first));
        peer.SimpleReply(0, first.cookie, Fill(first.length, 'A'));
        ASSERT_TRUE(ReadReq(peer, &second));
        // The first reply again, for the second request's tag.
        peer.SimpleReply(0, first.cookie, Fill(second.length, 'A'));
        std::string rest;
        peer.Read(1, &rest);  // until the client drops the connection
      },
      options);
  ASSERT_THAT(h.ready(), IsOk());
  auto first = h.Do(0, kRead, 0, 4096);
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->data == Fill(4096, 'A'));
  auto second = h.Do(0, kRead, 40960, 4096);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->result, 4096);
  EXPECT_TRUE(second->data == Expected(40960, 4096)) << "the replayed reply completed the read";
  EXPECT_EQ(h.connects(), 1);
}

// Every NBD error reaches the kernel as its own errno (the block layer
// passes EPERM..EOPNOTSUPP on as it can), in simple replies and in
// structured error chunks alike.
struct ErrorCase {
  uint32_t nbd_error;
  int32_t expected;
};
class ServerErrorTest : public ::testing::TestWithParam<std::tuple<ErrorCase, bool>> {};

TEST_P(ServerErrorTest, ReachesTheKernelUnchanged) {
  const auto [c, structured] = GetParam();
  WorkerHarness::Options options;
  options.info =
      testing::TestExport(structured ? nbd::HeaderMode::kStructured : nbd::HeaderMode::kSimple);
  const uint32_t error = c.nbd_error;
  WorkerHarness h(
      [error, structured](FakePeer& peer) {
        Req r;
        while (ReadReqAndPayload(peer, &r)) {
          if (structured) {
            peer.Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeError, r.cookie,
                       ErrorChunk(error, "no"));
          } else {
            peer.SimpleReply(error, r.cookie);
          }
        }
      },
      options);
  ASSERT_THAT(h.ready(), IsOk());
  auto r = h.Do(0, kRead, 0, 4096);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, c.expected) << "read, NBD error " << error;
  auto w = h.Do(1, kWrite, 0, 4096, Fill(4096, 'x'));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->result, c.expected) << "write, NBD error " << error;
}

INSTANTIATE_TEST_SUITE_P(
    EveryCode, ServerErrorTest,
    ::testing::Combine(::testing::Values(ErrorCase{nbd::kEPerm, -EPERM}, ErrorCase{5, -EIO},
                                         ErrorCase{12, -ENOMEM}, ErrorCase{22, -EINVAL},
                                         ErrorCase{28, -ENOSPC},
                                         ErrorCase{nbd::kEOverflow, -EOVERFLOW},
                                         ErrorCase{nbd::kENotSup, -EOPNOTSUPP},
                                         // The spec: treat an unknown error as EINVAL.
                                         ErrorCase{999, -EINVAL}),
                       ::testing::Bool()));

std::string ErrorOffsetChunk(uint32_t error, uint64_t offset) {
  return nbd::ByteWriter().Put(error).Put(uint16_t{0}).Put(offset).Take();
}

// A structured read from chunks out of order, with a hole: each lands at
// its place, the hole is zeroes.
TEST(QueueWorkerTest, StructuredReadFromChunksInAnyOrder) {
  WorkerHarness::Options options;
  options.info = testing::TestExport(nbd::HeaderMode::kStructured);
  WorkerHarness h(
      [](FakePeer& peer) {
        Req r;
        ASSERT_TRUE(ReadReqAndPayload(peer, &r));  // the write
        peer.SimpleReply(0, r.cookie);
        ASSERT_TRUE(ReadReq(peer, &r));
        peer.Chunk(0, nbd::kReplyTypeOffsetData, r.cookie, DataChunk(r.offset + 3072, Fill(1024, 'd')));
        peer.Chunk(0, nbd::kReplyTypeOffsetHole, r.cookie,
                   nbd::ByteWriter().Put(r.offset + 1024).Put(uint32_t{2048}).Take());
        peer.Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetData, r.cookie,
                   DataChunk(r.offset, Fill(1024, 'a')));
        Honest(peer);
      },
      options);
  ASSERT_THAT(h.ready(), IsOk());
  // The buffer held other bytes before: the hole must be zeroed.
  auto w = h.Do(0, kWrite, 0, 4096, Fill(4096, 'x'));
  ASSERT_TRUE(w.has_value());
  auto r = h.Do(0, kRead, 8192, 4096);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, 4096);
  EXPECT_TRUE(r->data == Fill(1024, 'a') + std::string(2048, '\0') + Fill(1024, 'd'));
}

// A reply's first chunk is taken and its last has not come: the worker
// acknowledges at once, before the server sends more (here the server
// waits for that, as qemu-nbd waits under Nagle's algorithm for the ACK of
// what it sent, which Linux would delay by 40 ms). A reply in one chunk,
// and a simple reply, push nothing.
TEST(QueueWorkerTest, AReplyInPartsIsAcknowledgedAtOnce) {
  WorkerHarness::Options options;
  options.info = testing::TestExport(nbd::HeaderMode::kStructured);
  ExpectAReplyInPartsAcknowledgedAtOnce(options);
}

// Copy path: while a large read may be answered, each RECV into staging
// asks for exactly one element (the chunk's header, then its offset), and
// the payload goes straight into the request's buffer. A wide RECV would
// take up to 32 KiB of the payload into staging and copy it out: one RECV
// fewer, and 8% slower on 128 KiB reads (docs/BENCHMARKS.md). The wide
// RECV armed while nothing was in flight is taken back before the read
// goes.
TEST(QueueWorkerTest, ALargeReadsPayloadNeverPassesThroughStaging) {
  WorkerHarness::Options options;
  options.info = testing::TestExport(nbd::HeaderMode::kStructured);
  WorkerHarness h(HonestStructured, options);
  ASSERT_THAT(h.ready(), IsOk());
  constexpr uint32_t kLen = WorkerHarness::kMaxIoBytes;
  ASSERT_TRUE(testing::WaitFor([&h] { return testing::Recvs(h) == 1; }));  // armed at the start
  const uint64_t before = testing::Recvs(h);
  constexpr int kReads = 4;
  for (int i = 0; i < kReads; ++i) {
    auto r = h.Do(static_cast<uint16_t>(i), kRead, uint64_t{kLen} * i, kLen);
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->result, static_cast<int32_t>(kLen));
    ASSERT_TRUE(r->data == Expected(uint64_t{kLen} * i, kLen)) << i;
  }
  // Each read: the wide RECV armed before it, taken back before it goes
  // (nothing can come for it then), then its header's, its offset's and
  // its payload's RECVs; the last wide one is armed just after the last
  // commit. Had the wide one stayed, it would have taken the header, the
  // offset and up to 32 KiB of data: 2 RECVs per read.
  EXPECT_TRUE(testing::WaitFor([&] { return testing::Recvs(h) - before == 4u * kReads; }))
      << testing::Recvs(h) - before;
}

// ERROR_OFFSET's offset must lie inside the request (NBD spec): one
// outside it is a protocol fault, so the connection is dropped and the
// request sent again; one inside is the request's error.
TEST(QueueWorkerTest, ErrorOffsetOutsideTheRequestIsAFault) {
  WorkerHarness::Options options;
  options.info = testing::TestExport(nbd::HeaderMode::kStructured);
  options.reconnect_scripts.push_back([](FakePeer& peer) {
    Req r;
    while (ReadReqAndPayload(peer, &r)) {
      peer.Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeErrorOffset, r.cookie,
                 ErrorOffsetChunk(28, r.offset + 512));
    }
  });
  WorkerHarness h(
      [](FakePeer& peer) {
        Req r;
        ASSERT_TRUE(ReadReq(peer, &r));
        peer.Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeErrorOffset, r.cookie,
                   ErrorOffsetChunk(28, r.offset + r.length));  // just past its end
        std::string rest;
        peer.Read(1, &rest);
      },
      options);
  ASSERT_THAT(h.ready(), IsOk());
  auto r = h.Do(0, kRead, 4096, 4096);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, -ENOSPC);  // from the second server, whose offset is inside
  EXPECT_EQ(h.connects(), 1);
}

// NBD_ESHUTDOWN: the server is going away and did not do the request. The
// client disconnects (the spec's rule) and sends it again elsewhere: the
// application sees no error.
TEST(QueueWorkerTest, ShutdownErrorSendsTheRequestAgainOnANewConnection) {
  WorkerHarness::Options options;
  options.reconnect_scripts.push_back(Honest);
  WorkerHarness h(
      [](FakePeer& peer) {
        Req r;
        ASSERT_TRUE(ReadReqAndPayload(peer, &r));
        peer.SimpleReply(nbd::kEShutdown, r.cookie);
        std::string rest;
        peer.Read(1, &rest);
      },
      options);
  ASSERT_THAT(h.ready(), IsOk());
  auto w = h.Do(2, kWrite, 0, 4096, Fill(4096, 'w'));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->result, 4096);
  EXPECT_EQ(h.connects(), 1);
}

// Replies in the reverse order of their requests, all in one write: each
// completes its own request, and they are parsed out of a few RECVs, not
// two per reply (the receive path reads in bulk).
TEST(QueueWorkerTest, ManyRepliesAtOnceInAnyOrder) {
  constexpr int kDepth = 8;
  WorkerHarness::Options options;
  options.depth = kDepth;
  WorkerHarness h(
      [](FakePeer& peer) {
        std::vector<Req> reqs(kDepth);
        for (Req& r : reqs) ASSERT_TRUE(ReadReq(peer, &r));
        nbd::ByteWriter all;
        for (auto it = reqs.rbegin(); it != reqs.rend(); ++it) {
          all.Put(nbd::kSimpleReplyMagic).Put(uint32_t{0}).Put(it->cookie)
              .PutBytes(Expected(it->offset, it->length));
        }
        peer.Write(all.Take());
        Honest(peer);
      },
      options);
  ASSERT_THAT(h.ready(), IsOk());
  for (uint16_t tag = 0; tag < kDepth; ++tag) {
    ASSERT_TRUE(h.kernel().Issue(tag, kRead, uint64_t{tag} * 4096 * 3, 4096));
  }
  for (uint16_t tag = 0; tag < kDepth; ++tag) {
    auto c = h.kernel().WaitCommit(tag);
    ASSERT_TRUE(c.has_value()) << tag;
    EXPECT_EQ(c->result, 4096) << tag;
    EXPECT_TRUE(c->data == Expected(uint64_t{tag} * 4096 * 3, 4096)) << tag;
  }
  const StatsSnapshot stats = h.worker().stats().Snapshot();
  EXPECT_LE(stats.recvs, uint64_t{kDepth}) << "more RECVs than replies";
}

// A server that writes its replies a byte at a time: the worker gathers
// them across as many RECVs as it takes.
TEST(QueueWorkerTest, RepliesTrickleInAByteAtATime) {
  WorkerHarness::Options options;
  options.info = testing::TestExport(nbd::HeaderMode::kStructured);
  WorkerHarness h(
      [](FakePeer& peer) {
        Req r;
        ASSERT_TRUE(ReadReq(peer, &r));
        const std::string reply =
            nbd::ByteWriter()
                .Put(nbd::kStructuredReplyMagic)
                .Put(nbd::kReplyFlagDone)
                .Put(nbd::kReplyTypeOffsetData)
                .Put(r.cookie)
                .Put(static_cast<uint32_t>(8 + r.length))
                .Put(r.offset)
                .PutBytes(Expected(r.offset, r.length))
                .Take();
        for (char c : reply) peer.Write(std::string(1, c));
        Honest(peer);
      },
      options);
  ASSERT_THAT(h.ready(), IsOk());
  auto r = h.Do(3, kRead, 4096 * 5, 2048);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, 2048);
  EXPECT_TRUE(r->data == Expected(4096 * 5, 2048));
}

// A server that acknowledges a write before it has its data, then hangs
// up: the data never all left this host, so the write fails with EIO; it
// is never reported written.
TEST(QueueWorkerTest, AWriteAcknowledgedBeforeItsDataLeftFails) {
  WorkerHarness::Options options;
  options.send_buffer = 4096;
  WorkerHarness h(
      [](FakePeer& peer) {
        Req r;
        ASSERT_TRUE(ReadReq(peer, &r));  // the header only, not the 64 KiB after it
        peer.SimpleReply(0, r.cookie);
      },
      options);
  ASSERT_THAT(h.ready(), IsOk());
  auto w = h.Do(1, kWrite, 0, 64 * 1024, Fill(64 * 1024, 'w'));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->result, -EIO);
}

}  // namespace
}  // namespace ublkgw::engine
