// The real queue worker with batched ublk commands (UBLK_F_BATCH_IO), on
// the host: the fake kernel checks PREP_IO_CMDS and COMMIT_IO_CMDS element
// by element, hands requests out through a multishot FETCH_IO_CMDS, and
// refuses any per-tag command on such a device. Each test runs on the copy
// path and on zero copy registered by the driver (the table, with
// READ_FIXED and WRITE_FIXED, which every host kernel performs on a unix
// socket).
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

using testing::WorkerHarness;
using ::testing::IsEmpty;
using ::ublkgw::testing::IsOk;
using namespace testing::scripts;  // NOLINT: the tests' vocabulary

class BatchTest : public ::testing::TestWithParam<bool> {
 protected:
  WorkerHarness::Options Options(nbd::HeaderMode mode = nbd::HeaderMode::kSimple) const {
    WorkerHarness::Options options;
    options.info = testing::TestExport(mode);
    options.plan.batch = true;
    if (GetParam()) {
      options.plan.zero_copy = true;
      options.plan.registration = BufferRegistration::kAuto;
      options.plan.small_write = options.plan.large_write = WriteOp::kWriteFixed;
      options.plan.read = ReadOp::kReadFixed;
    }
    return options;
  }
};

TEST_P(BatchTest, ReadsAndWritesGoThroughBatchedCommands) {
  std::string written;
  WorkerHarness h(Recording(&written), Options());
  ASSERT_THAT(h.ready(), IsOk());
  auto w = h.Do(0, kWrite, 8192, 16384, Fill(16384, 'w'));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->result, 16384);
  EXPECT_TRUE(written == Fill(16384, 'w'));
  auto r = h.Do(1, kRead, 40960, 32768);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, 32768);
  EXPECT_TRUE(r->data == Expected(40960, 32768));
  // The same tag again: committed, it went back to the kernel, which
  // hands it out through the same fetch.
  auto again = h.Do(1, kRead, 0, 4096);
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(again->data == Expected(0, 4096));
  EXPECT_EQ(h.kernel().fetches_armed(), 1);
  EXPECT_EQ(h.kernel().batch_commits().second, 3);
  // The fake carries a commit out when it is prepared; the worker submits
  // it at the end of that loop turn.
  EXPECT_TRUE(testing::WaitFor([&h] { return h.kernel().UnsubmittedBatchCommands() == 0; }));
  EXPECT_THAT(h.kernel().batch_refusals(), IsEmpty());
}

// Four writes in one fetch completion, answered in one burst: on the copy
// path one COMMIT_IO_CMDS commits all four. (On zero copy a write's commit
// also waits for its payload op's completion, which may come a turn after
// the reply: there the four take one or more commands.)
TEST_P(BatchTest, RequestsOfOneCompletionAnsweredTogetherShareOneCommit) {
  WorkerHarness::Options options = Options();
  options.depth = 4;
  WorkerHarness h(AnswersInOneBurst(4), options);
  ASSERT_THAT(h.ready(), IsOk());
  h.kernel().Hold();
  for (uint16_t tag = 0; tag < 4; ++tag) {
    ASSERT_TRUE(h.kernel().Issue(tag, kWrite, uint64_t{tag} * 8192, 4096, Fill(4096, 'w')));
  }
  ASSERT_TRUE(h.kernel().Deliver());
  for (uint16_t tag = 0; tag < 4; ++tag) {
    auto c = h.kernel().WaitCommit(tag);
    ASSERT_TRUE(c.has_value()) << tag;
    EXPECT_EQ(c->result, 4096);
  }
  const auto [commands, committed] = h.kernel().batch_commits();
  EXPECT_EQ(committed, 4);
  if (!GetParam()) {
    EXPECT_EQ(commands, 1);
  }
  EXPECT_THAT(h.kernel().batch_refusals(), IsEmpty());
}

// The fetch ends while the device runs: its buffers ran out (-ENOBUFS),
// it ended with its last one (0), or the kernel failed it (-ENOMEM). The
// worker fetches again, and the next request comes through the new fetch.
class FetchEndTest : public ::testing::TestWithParam<int> {};

TEST_P(FetchEndTest, AFetchThatEndsWhileTheDeviceRunsIsArmedAgain) {
  WorkerHarness::Options options;
  options.plan.batch = true;
  WorkerHarness h(Honest, options);
  ASSERT_THAT(h.ready(), IsOk());
  ASSERT_TRUE(h.kernel().EndFetch(GetParam()));
  auto r = h.Do(2, kRead, 4096, 4096);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->data == Expected(4096, 4096));
  EXPECT_EQ(h.kernel().fetches_armed(), 2);
  EXPECT_THAT(h.kernel().batch_refusals(), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(Results, FetchEndTest, ::testing::Values(-ENOBUFS, 0, -ENOMEM),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param == 0 ? std::string("LastBuffer")
                                                  : "Errno" + std::to_string(-info.param);
                         });

// PREP_IO_CMDS fails: the fetch linked behind it is cancelled, no request
// can come, and the worker ends, saying why, rather than wait for ever.
TEST(BatchFailureTest, AFailedPrepEndsTheWorkerWithItsError) {
  WorkerHarness::Options options;
  options.plan.batch = true;
  options.batch_prep_fails = true;
  WorkerHarness h(Honest, options);
  ASSERT_TRUE(h.WaitRunDone());
  EXPECT_FALSE(h.run_status().ok());
  EXPECT_THAT(std::string(h.run_status().message()), ::testing::HasSubstr("PREP_IO_CMDS"));
}

// The kernel refuses one element of a commit (a tag it does not think is
// the server's: a bug of ours) and so never looks at those after it. They
// are still the worker's: it commits them in its next command, and fails
// the queue's I/O for good (an invariant broke). The device then stops
// cleanly.
TEST(BatchFailureTest, ElementsAfterARefusedOneAreCommittedAgain) {
  WorkerHarness::Options options;
  options.plan.batch = true;
  options.depth = 4;
  WorkerHarness h(AnswersInOneBurst(3), options);
  ASSERT_THAT(h.ready(), IsOk());
  h.kernel().RefuseCommitOf(1);
  h.kernel().Hold();
  for (uint16_t tag = 0; tag < 3; ++tag) {
    ASSERT_TRUE(h.kernel().Issue(tag, kWrite, uint64_t{tag} * 8192, 4096, Fill(4096, 'w')));
  }
  ASSERT_TRUE(h.kernel().Deliver());
  auto first = h.kernel().WaitCommit(0);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->result, 4096);
  auto third = h.kernel().WaitCommit(2);
  ASSERT_TRUE(third.has_value()) << "the element after the refused one was never committed";
  EXPECT_EQ(third->result, 4096);
  EXPECT_EQ(h.kernel().batch_commits(), std::make_pair(2, 2));
  h.kernel().StopDevice();
  EXPECT_TRUE(h.WaitRunDone());
  EXPECT_EQ(h.kernel().UnsubmittedBatchCommands(), 0);
}

// The device stops while a read waits for its reply: the worker stays
// until that read is committed, then ends cleanly; the tags the kernel
// held are done at once.
TEST_P(BatchTest, StoppingWaitsForTheRequestInFlightThenEnds) {
  absl::Notification answer;
  WorkerHarness h(
      [&answer](FakePeer& peer) {
        Req r;
        ASSERT_TRUE(ReadReq(peer, &r));
        answer.WaitForNotification();
        peer.SimpleReply(0, r.cookie, Expected(r.offset, r.length));
        Honest(peer);
      },
      Options());
  ASSERT_THAT(h.ready(), IsOk());
  ASSERT_TRUE(h.kernel().Issue(3, kRead, 0, 4096));
  h.kernel().StopDevice();
  // Not done while tag 3 is the worker's.
  EXPECT_FALSE(h.WaitRunDone(absl::Milliseconds(200)));
  answer.Notify();
  auto c = h.kernel().WaitCommit(3);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->result, 4096);
  EXPECT_TRUE(c->data == Expected(0, 4096));
  EXPECT_TRUE(h.WaitRunDone());
  EXPECT_EQ(h.kernel().UnsubmittedBatchCommands(), 0);
  EXPECT_EQ(h.worker().stats().Snapshot().of(OpKind::kRead).errors, 0u);
  EXPECT_THAT(h.kernel().batch_refusals(), IsEmpty());
}

// A structured read with a hole, through batched commands: on zero copy
// the hole's fill is in flight when the reply ends, and the commit waits
// for it.
TEST_P(BatchTest, AStructuredReadWithAHoleIsCommittedWhole) {
  WorkerHarness h(
      [](FakePeer& peer) {
        Req r;
        ASSERT_TRUE(ReadReq(peer, &r));
        peer.Chunk(0, nbd::kReplyTypeOffsetHole, r.cookie,
                   nbd::ByteWriter().Put(r.offset + 1024).Put(uint32_t{3072}).Take());
        peer.Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetData, r.cookie,
                   DataChunk(r.offset, Fill(1024, 'a')));
        HonestStructured(peer);
      },
      Options(nbd::HeaderMode::kStructured));
  ASSERT_THAT(h.ready(), IsOk());
  auto r = h.Do(0, kRead, 8192, 4096);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, 4096);
  EXPECT_TRUE(r->data == Fill(1024, 'a') + std::string(3072, '\0'));
  EXPECT_THAT(h.kernel().batch_refusals(), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(Paths, BatchTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "ZeroCopy" : "Copy";
                         });

}  // namespace
}  // namespace ublkgw::engine
