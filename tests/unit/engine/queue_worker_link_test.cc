// The real queue worker on the host when its connection goes wrong:
// reconnect with requeue, the reconnect deadline, the I/O timeout, a
// request that breaks every server, a forced detach, leaving for the next
// daemon, and every hostile server class the guest suite also runs.
#include <cerrno>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "engine/worker_harness.h"
#include "engine/worker_scripts.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw::engine {
namespace {

using testing::WorkerHarness;
using ::ublkgw::testing::IsOk;
using namespace testing::scripts;  // NOLINT: the tests' vocabulary

using testing::WaitFor;

// Reads `n` requests, answers none, and hangs up.
Script DropAfter(int n) {
  return [n](FakePeer& peer) {
    Req r;
    for (int i = 0; i < n; ++i) {
      if (!ReadReqAndPayload(peer, &r)) return;
    }
  };
}

TEST(QueueWorkerLinkTest, UnansweredRequestsAreSentAgainOnTheNextConnection) {
  WorkerHarness::Options options;
  options.reconnect_scripts.push_back(Honest);
  WorkerHarness h(
      [](FakePeer& peer) {
        Req a, b, c;
        ASSERT_TRUE(ReadReq(peer, &a));
        ASSERT_TRUE(ReadReqAndPayload(peer, &b));
        ASSERT_TRUE(ReadReq(peer, &c));
        peer.SimpleReply(0, a.cookie, Expected(a.offset, a.length));  // one of three
      },
      options);
  ASSERT_THAT(h.ready(), IsOk());
  ASSERT_TRUE(h.kernel().Issue(0, kRead, 0, 4096));
  ASSERT_TRUE(h.kernel().Issue(1, kWrite, 8192, 4096, Fill(4096, 'w')));
  ASSERT_TRUE(h.kernel().Issue(2, kRead, 40960, 8192));
  auto a = h.kernel().WaitCommit(0);
  auto b = h.kernel().WaitCommit(1);
  auto c = h.kernel().WaitCommit(2);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->result, 4096);
  EXPECT_TRUE(a->data == Expected(0, 4096));
  EXPECT_EQ(b->result, 4096);
  EXPECT_EQ(c->result, 8192);
  EXPECT_TRUE(c->data == Expected(40960, 8192));
  EXPECT_EQ(h.connects(), 1);
  EXPECT_EQ(h.worker().link(), Link::kUp);
  EXPECT_EQ(h.worker().stats().Snapshot().reconnects, 1u);
}

TEST(QueueWorkerLinkTest, RequestsFailAtTheReconnectDeadlineAndAfterIt) {
  WorkerHarness::Options options;
  options.reconnect_fails = true;
  options.reconnect.reconnect_deadline = absl::Milliseconds(300);
  WorkerHarness h(DropAfter(1), options);
  ASSERT_THAT(h.ready(), IsOk());
  const absl::Time start = absl::Now();
  auto r = h.Do(0, kRead, 0, 4096);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, -EIO);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300)) << "it failed before the deadline";
  EXPECT_EQ(h.worker().link(), Link::kFailingIo);
  EXPECT_NE(h.worker().connection_error().find("reconnect deadline"), std::string::npos)
      << h.worker().connection_error();
  auto later = h.Do(1, kWrite, 0, 4096, Fill(4096, 'x'));
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(later->result, -EIO);
  EXPECT_GE(h.connects(), 1);
}

TEST(QueueWorkerLinkTest, WithoutReconnectingALostConnectionFailsItsRequests) {
  WorkerHarness h(DropAfter(1), {});
  ASSERT_THAT(h.ready(), IsOk());
  auto r = h.Do(0, kRead, 0, 4096);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, -EIO);
  EXPECT_EQ(h.worker().link(), Link::kFailingIo);
  auto later = h.Do(0, kRead, 0, 4096);
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(later->result, -EIO);
}

TEST(QueueWorkerLinkTest, ASilentServerIsLeftAtTheIoTimeout) {
  WorkerHarness::Options options;
  options.reconnect.io_timeout = absl::Milliseconds(200);
  options.reconnect_scripts.push_back(Honest);
  WorkerHarness h(Silent, options);
  ASSERT_THAT(h.ready(), IsOk());
  auto r = h.Do(1, kRead, 4096, 4096);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, 4096);
  EXPECT_TRUE(r->data == Expected(4096, 4096));
  EXPECT_EQ(h.connects(), 1);
}

// A request that every server drops the connection over fails after
// max_attempts sends, and its neighbour, which breaks nothing, completes:
// from its third send the suspect goes alone.
TEST(QueueWorkerLinkTest, ARequestThatBreaksEveryServerFailsAloneAfterItsAttempts) {
  const uint64_t kPoison = 65536;
  auto breaks_on_poison = [kPoison](FakePeer& peer) {
    Req r;
    while (ReadReqAndPayload(peer, &r)) {
      if (r.offset == kPoison) return;  // hangs up, answering nothing after it
      peer.SimpleReply(0, r.cookie, r.type == nbd::kCmdRead ? Expected(r.offset, r.length) : "");
    }
  };
  WorkerHarness::Options options;
  options.reconnect.max_attempts = 3;
  for (int i = 0; i < 3; ++i) options.reconnect_scripts.push_back(breaks_on_poison);
  options.reconnect_scripts.push_back(Honest);
  WorkerHarness h(breaks_on_poison, options);
  ASSERT_THAT(h.ready(), IsOk());
  ASSERT_TRUE(h.kernel().Issue(0, kRead, kPoison, 4096));
  ASSERT_TRUE(h.kernel().Issue(1, kRead, 0, 4096));
  auto poison = h.kernel().WaitCommit(0);
  auto good = h.kernel().WaitCommit(1);
  ASSERT_TRUE(poison && good);
  EXPECT_EQ(poison->result, -EIO);
  EXPECT_EQ(good->result, 4096);
  EXPECT_TRUE(good->data == Expected(0, 4096));
  EXPECT_EQ(h.worker().link(), Link::kUp);
}

// Reads one request, says so, and answers nothing.
Script SilentAfterReading(absl::Notification* read) {
  return [read](FakePeer& peer) {
    Req r;
    if (ReadReq(peer, &r)) read->Notify();
    Silent(peer);
  };
}

TEST(QueueWorkerLinkTest, AForcedDetachFailsWhatWaitsForASilentServer) {
  absl::Notification read;
  WorkerHarness h(SilentAfterReading(&read), {});
  ASSERT_THAT(h.ready(), IsOk());
  ASSERT_TRUE(h.kernel().Issue(0, kRead, 0, 4096));
  ASSERT_TRUE(read.WaitForNotificationWithTimeout(absl::Seconds(10)));  // on the wire
  h.worker().Abort();
  auto r = h.kernel().WaitCommit(0);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, -EIO);
  EXPECT_EQ(h.worker().link(), Link::kFailingIo);
  auto later = h.Do(1, kWrite, 0, 4096, Fill(4096, 'x'));
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(later->result, -EIO);
}

// Leaving for the next daemon: what was sent is answered and committed
// before Run() returns; nothing is sent after the order.
TEST(QueueWorkerLinkTest, LeavingWaitsForTheRepliesToWhatWasSent) {
  absl::Notification both_read, told_to_leave;
  WorkerHarness h(
      [&both_read, &told_to_leave](FakePeer& peer) {
        Req a, b;
        ASSERT_TRUE(ReadReq(peer, &a));
        ASSERT_TRUE(ReadReq(peer, &b));
        both_read.Notify();
        told_to_leave.WaitForNotification();
        peer.SimpleReply(0, b.cookie, Expected(b.offset, b.length));
        peer.SimpleReply(0, a.cookie, Expected(a.offset, a.length));
        Req more;
        EXPECT_FALSE(ReadReq(peer, &more)) << "a request was sent after the order to leave";
      },
      {});
  ASSERT_THAT(h.ready(), IsOk());
  ASSERT_TRUE(h.kernel().Issue(0, kRead, 0, 4096));
  ASSERT_TRUE(h.kernel().Issue(1, kRead, 4096, 4096));
  // Both on the wire before the order: the server has read them.
  ASSERT_TRUE(both_read.WaitForNotificationWithTimeout(absl::Seconds(10)));
  h.worker().Leave();
  // Told again in a later turn (shutdown does so: BeginLeave, then Leave):
  // a request arriving now, seen by the worker, marks that turn.
  ASSERT_TRUE(h.kernel().Issue(2, kRead, 8192, 4096));
  ASSERT_TRUE(WaitFor([&h] { return h.worker().stats().Snapshot().in_flight == 3; }));
  h.worker().Leave();
  told_to_leave.Notify();
  ASSERT_TRUE(h.WaitRunDone()) << "Run() did not return after leaving";
  auto a = h.kernel().WaitCommit(0);
  auto b = h.kernel().WaitCommit(1);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->result, 4096);
  EXPECT_EQ(b->result, 4096);
  EXPECT_FALSE(h.kernel().WaitCommit(2, absl::Milliseconds(100)).has_value())
      << "a request never sent was committed: the next daemon would never get it";
}

TEST(QueueWorkerLinkTest, LeavingAfterTheGraceLeavesTheUnansweredToTheNextDaemon) {
  absl::Notification read;
  WorkerHarness h(SilentAfterReading(&read), {});
  ASSERT_THAT(h.ready(), IsOk());
  ASSERT_TRUE(h.kernel().Issue(0, kRead, 0, 4096));
  ASSERT_TRUE(read.WaitForNotificationWithTimeout(absl::Seconds(10)));
  const absl::Time start = absl::Now();
  h.worker().Leave();
  ASSERT_TRUE(h.WaitRunDone(QueueWorker::kLeaveGrace + absl::Seconds(5)));
  EXPECT_GE(absl::Now() - start, QueueWorker::kLeaveGrace - absl::Seconds(1));
  EXPECT_FALSE(h.kernel().WaitCommit(0, absl::Milliseconds(100)).has_value())
      << "a request without a reply was committed: the next daemon would never get it";
}

TEST(QueueWorkerLinkTest, LeavingWhileDisconnectedIsAtOnce) {
  WorkerHarness::Options options;
  options.reconnect_fails = true;
  WorkerHarness h(DropAfter(1), options);
  ASSERT_THAT(h.ready(), IsOk());
  ASSERT_TRUE(h.kernel().Issue(0, kRead, 0, 4096));
  ASSERT_TRUE(WaitFor([&h] { return h.worker().link() == Link::kReconnecting; }));
  h.worker().Leave();
  ASSERT_TRUE(h.WaitRunDone(absl::Seconds(3)));
  EXPECT_FALSE(h.kernel().WaitCommit(0, absl::Milliseconds(100)).has_value());
}

TEST(QueueWorkerLinkTest, ExitNowReturnsWithoutFailingAnything) {
  absl::Notification read;
  WorkerHarness h(SilentAfterReading(&read), {});
  ASSERT_THAT(h.ready(), IsOk());
  ASSERT_TRUE(h.kernel().Issue(0, kRead, 0, 4096));
  ASSERT_TRUE(read.WaitForNotificationWithTimeout(absl::Seconds(10)));  // on the wire
  h.worker().ExitNow();
  ASSERT_TRUE(h.WaitRunDone(absl::Seconds(3)));
  EXPECT_FALSE(h.kernel().WaitCommit(0, absl::Milliseconds(100)).has_value());
}

// The hostile server classes of the guest suite (tests/guest/scenarios/
// hostile.sh), each committed once on a read: the connection is dropped,
// the read sent again to an honest server, and its data is right.
enum class Hostile { kWrongMagic, kUnknownCookie, kDuplicateCookie, kOversizedChunk, kTruncated };

Script Faulty(Hostile fault) {
  return [fault](FakePeer& peer) {
    Req r;
    if (!ReadReq(peer, &r)) return;
    const std::string data = Expected(r.offset, r.length);
    auto reply = [&](uint64_t cookie, const std::string& bytes) {
      peer.Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetData, cookie,
                 DataChunk(r.offset, bytes));
    };
    switch (fault) {
      case Hostile::kWrongMagic:
        peer.Write(nbd::ByteWriter().Put(uint32_t{0x12345678}).Put(uint32_t{0}).Put(r.cookie)
                       .PutBytes(data).Take());
        break;
      case Hostile::kUnknownCookie:
        reply(r.cookie ^ 0x5a5a000000000000ull, data);
        break;
      case Hostile::kDuplicateCookie:
        reply(r.cookie, data);
        reply(r.cookie, data);
        break;
      case Hostile::kOversizedChunk:
        reply(r.cookie, data + data);
        break;
      case Hostile::kTruncated: {
        // The header promises the whole read; half of it comes.
        const std::string whole = DataChunk(r.offset, data);
        peer.Write(nbd::ByteWriter()
                       .Put(nbd::kStructuredReplyMagic)
                       .Put(nbd::kReplyFlagDone)
                       .Put(nbd::kReplyTypeOffsetData)
                       .Put(r.cookie)
                       .Put(static_cast<uint32_t>(whole.size()))
                       .PutBytes(whole.substr(0, whole.size() / 2))
                       .Take());
        return;  // and hangs up
      }
    }
    Silent(peer);
  };
}

class HostileServerTest : public ::testing::TestWithParam<Hostile> {};

TEST_P(HostileServerTest, CostsAConnectionNeverData) {
  WorkerHarness::Options options;
  options.info = testing::TestExport(nbd::HeaderMode::kStructured);
  options.reconnect_scripts.push_back(HonestStructured);
  WorkerHarness h(Faulty(GetParam()), options);
  ASSERT_THAT(h.ready(), IsOk());
  auto r = h.Do(2, kRead, 12288, 4096);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, 4096);
  EXPECT_TRUE(r->data == Expected(12288, 4096));
  // The duplicate's second copy arrives for a request no longer in flight:
  // it must not complete the next use of the tag.
  auto next = h.Do(2, kRead, 0, 4096);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->result, 4096);
  EXPECT_TRUE(next->data == Expected(0, 4096));
  EXPECT_EQ(h.connects(), 1);
}

INSTANTIATE_TEST_SUITE_P(EveryClass, HostileServerTest,
                         ::testing::Values(Hostile::kWrongMagic, Hostile::kUnknownCookie,
                                           Hostile::kDuplicateCookie, Hostile::kOversizedChunk,
                                           Hostile::kTruncated));

}  // namespace
}  // namespace ublkgw::engine
