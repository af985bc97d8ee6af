// TagTable: a tag's lifecycle, the transitions it refuses, and the
// questions the worker asks of the table.
#include "engine/tag_table.h"

#include "engine/request_mapping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbd/wire.h"

namespace ublkgw::engine {
namespace {

using ::testing::ElementsAre;

nbd::Request ReadOf(uint64_t offset) {
  nbd::Request r;
  r.type = nbd::kCmdRead;
  r.offset = offset;
  r.length = 4096;
  return r;
}

// Takes `tag` from kFetching to kInFlight as send number `seq`.
void SendOne(TagTable& tags, uint16_t tag, uint64_t seq, uint64_t now = 0) {
  ASSERT_TRUE(tags.Arrive(tag, {}, now));
  ASSERT_TRUE(tags.Queue(tag, ReadOf(tag * 4096)));
  ASSERT_TRUE(tags.Send(tag, MakeCookie(seq, tag), now, seq));
}

TEST(TagTableTest, ARequestGoesRoundItsLifecycle) {
  TagTable tags(4);
  EXPECT_EQ(tags.live(), 4);
  EXPECT_TRUE(tags.Arrive(2, {}, 7));
  EXPECT_EQ(tags[2].state, TagState::kOwned);
  EXPECT_EQ(tags[2].start_ns, 7u);
  EXPECT_TRUE(tags.Queue(2, ReadOf(0)));
  EXPECT_EQ(tags.on_wire(), 0);
  EXPECT_TRUE(tags.Send(2, MakeCookie(1, 2), 9, 1));
  EXPECT_EQ(tags[2].state, TagState::kInFlight);
  EXPECT_EQ(tags[2].attempts, 1);
  EXPECT_EQ(tags.on_wire(), 1);
  EXPECT_TRUE(tags.Answer(2, 4096));
  EXPECT_EQ(tags.on_wire(), 1);  // until its commit
  EXPECT_TRUE(tags.Commit(2));
  EXPECT_EQ(tags[2].state, TagState::kFetching);
  EXPECT_EQ(tags.on_wire(), 0);
}

// What zero copy's receive path asks: may a read's data come now?
TEST(TagTableTest, CountsWhatAwaitsAReplyAndWhichOfItAreReads) {
  TagTable tags(4);
  nbd::Request write = ReadOf(0);
  write.type = nbd::kCmdWrite;
  ASSERT_TRUE(tags.Arrive(0, {}, 0));
  ASSERT_TRUE(tags.Queue(0, write));
  ASSERT_TRUE(tags.Arrive(1, {}, 0));
  ASSERT_TRUE(tags.Queue(1, ReadOf(4096)));
  EXPECT_EQ(tags.unanswered(), 0);
  EXPECT_EQ(tags.reads_unanswered(), 1);  // queued: it may go any time
  ASSERT_TRUE(tags.Send(0, MakeCookie(1, 0), 0, 1));
  ASSERT_TRUE(tags.Send(1, MakeCookie(2, 1), 0, 2));
  EXPECT_EQ(tags.unanswered(), 2);
  EXPECT_EQ(tags.reads_unanswered(), 1);
  ASSERT_TRUE(tags.Requeue(1));  // its connection failed
  EXPECT_EQ(tags.unanswered(), 1);
  EXPECT_EQ(tags.reads_unanswered(), 1);
  ASSERT_TRUE(tags.Commit(1));  // failed while queued
  EXPECT_EQ(tags.reads_unanswered(), 0);
  ASSERT_TRUE(tags.Answer(0, 4096));
  EXPECT_EQ(tags.unanswered(), 0);
  ASSERT_TRUE(tags.Commit(0));
  // A read answered, then committed; one committed while in flight (a
  // forced detach): each counted down once.
  SendOne(tags, 2, 3);
  SendOne(tags, 3, 4);
  EXPECT_EQ(tags.reads_unanswered(), 2);
  ASSERT_TRUE(tags.Answer(2, 4096));
  EXPECT_EQ(tags.reads_unanswered(), 1);
  ASSERT_TRUE(tags.Commit(2));
  ASSERT_TRUE(tags.Commit(3));
  EXPECT_EQ(tags.reads_unanswered(), 0);
  EXPECT_EQ(tags.unanswered(), 0);
  // A tag whose last request was a read, now owned by a new one and
  // committed before it was queued (an invalid request): nothing to count.
  ASSERT_TRUE(tags.Arrive(2, {}, 0));
  ASSERT_TRUE(tags.Commit(2));
  EXPECT_EQ(tags.reads_unanswered(), 0);
}

TEST(TagTableTest, LargeReadsAreCountedApart) {
  TagTable tags(4, /*large_read=*/16384);
  nbd::Request small = ReadOf(0), large = ReadOf(4096), write = ReadOf(8192);
  small.length = 16383;
  large.length = 16384;
  write.type = nbd::kCmdWrite;
  write.length = 65536;
  ASSERT_TRUE(tags.Arrive(0, {}, 0));
  ASSERT_TRUE(tags.Queue(0, small));
  ASSERT_TRUE(tags.Arrive(1, {}, 0));
  ASSERT_TRUE(tags.Queue(1, large));
  ASSERT_TRUE(tags.Arrive(2, {}, 0));
  ASSERT_TRUE(tags.Queue(2, write));
  EXPECT_EQ(tags.reads_unanswered(), 2);
  EXPECT_EQ(tags.large_reads_unanswered(), 1);
  ASSERT_TRUE(tags.Send(1, MakeCookie(1, 1), 0, 1));
  ASSERT_TRUE(tags.Requeue(1));
  EXPECT_EQ(tags.large_reads_unanswered(), 1);  // queued again: it may still go
  ASSERT_TRUE(tags.Send(1, MakeCookie(2, 1), 0, 2));
  ASSERT_TRUE(tags.Answer(1, 16384));
  EXPECT_EQ(tags.large_reads_unanswered(), 0);
  EXPECT_EQ(tags.reads_unanswered(), 1);
  ASSERT_TRUE(tags.Commit(1));
  ASSERT_TRUE(tags.Commit(0));
  EXPECT_EQ(tags.large_reads_unanswered(), 0);
  EXPECT_EQ(tags.reads_unanswered(), 0);
  // Without a threshold, no read is large.
  TagTable plain(1);
  ASSERT_TRUE(plain.Arrive(0, {}, 0));
  ASSERT_TRUE(plain.Queue(0, large));
  EXPECT_EQ(plain.large_reads_unanswered(), 0);
}

TEST(TagTableTest, TransitionsFromTheWrongStateAreRefused) {
  TagTable tags(2);
  EXPECT_FALSE(tags.Queue(0, ReadOf(0)));   // nothing arrived
  EXPECT_FALSE(tags.Send(0, 1, 0, 1));      // not queued
  EXPECT_FALSE(tags.Answer(0, 0));          // not in flight
  EXPECT_FALSE(tags.Requeue(0));
  EXPECT_FALSE(tags.Commit(0));             // no request to commit
  ASSERT_TRUE(tags.Arrive(0, {}, 0));
  EXPECT_FALSE(tags.Arrive(0, {}, 0));      // a second request on a busy tag
  EXPECT_FALSE(tags.Abort(0));              // the kernel aborts only fetches
  EXPECT_TRUE(tags.Abort(1));
  EXPECT_EQ(tags.live(), 1);
  EXPECT_FALSE(tags.Abort(1));
  EXPECT_FALSE(tags.Arrive(1, {}, 0));
}

TEST(TagTableTest, OnlyTheCookieOfATagsCurrentSendFindsIt) {
  TagTable tags(4);
  SendOne(tags, 1, /*seq=*/5);
  EXPECT_NE(tags.InFlight(MakeCookie(5, 1)), nullptr);
  EXPECT_EQ(tags.InFlight(MakeCookie(4, 1)), nullptr);  // an earlier use
  EXPECT_EQ(tags.InFlight(MakeCookie(5, 2)), nullptr);  // another tag
  EXPECT_EQ(tags.InFlight(MakeCookie(5, 900)), nullptr);  // beyond the depth
  ASSERT_TRUE(tags.Answer(1, 0));
  EXPECT_EQ(tags.InFlight(MakeCookie(5, 1)), nullptr);  // answered already
}

TEST(TagTableTest, AnAnsweredRequestIsDueWhenItsLastBufferUserLetsGo) {
  TagTable tags(2);
  SendOne(tags, 0, 1);
  tags.TakeBuffer(0);  // its payload send
  tags.TakeBuffer(0);  // SEND_ZC's notification
  ASSERT_TRUE(tags.Answer(0, 4096));
  bool due = true;
  EXPECT_TRUE(tags.ReleaseBuffer(0, &due));
  EXPECT_FALSE(due);
  EXPECT_TRUE(tags.ReleaseBuffer(0, &due));
  EXPECT_TRUE(due);
  EXPECT_FALSE(tags.ReleaseBuffer(0, &due));  // released more often than taken
}

TEST(TagTableTest, UnansweredRequestsComeInSendOrder) {
  TagTable tags(4);
  SendOne(tags, 3, 10);
  SendOne(tags, 0, 12);
  SendOne(tags, 2, 11);
  SendOne(tags, 1, 13);
  ASSERT_TRUE(tags.Answer(1, 0));
  EXPECT_THAT(tags.UnansweredBySend(), ElementsAre(3, 2, 0));
  EXPECT_TRUE(tags.Requeue(2));
  EXPECT_EQ(tags[2].state, TagState::kQueued);
  EXPECT_EQ(tags.on_wire(), 3);
}

TEST(TagTableTest, ASuspectInFlightHoldsBackTheRest) {
  TagTable tags(2);
  SendOne(tags, 0, 1);
  EXPECT_FALSE(tags.suspect_in_flight());
  ASSERT_TRUE(tags.Requeue(0));
  ASSERT_TRUE(tags.Send(0, MakeCookie(2, 0), 0, 2));
  EXPECT_FALSE(tags.suspect_in_flight());  // sent twice: not yet
  ASSERT_TRUE(tags.Requeue(0));
  ASSERT_TRUE(tags.Send(0, MakeCookie(3, 0), 0, 3));
  EXPECT_TRUE(tags.suspect_in_flight());  // its third send goes alone
  EXPECT_TRUE(tags[0].alone);
  ASSERT_TRUE(tags.Answer(0, 0));
  EXPECT_TRUE(tags.suspect_in_flight());  // until its commit
  ASSERT_TRUE(tags.Commit(0));
  EXPECT_FALSE(tags.suspect_in_flight());
}

TEST(TagTableTest, TimeoutsAndBuffersLookOnlyAtUnansweredRequests) {
  TagTable tags(3);
  SendOne(tags, 0, 1, /*now=*/100);
  SendOne(tags, 1, 2, /*now=*/200);
  EXPECT_TRUE(tags.AnyUnansweredSince(150));
  EXPECT_FALSE(tags.AnyUnansweredSince(100));
  ASSERT_TRUE(tags.Answer(0, 0));
  EXPECT_FALSE(tags.AnyUnansweredSince(150));
  EXPECT_FALSE(tags.AnyUnansweredBufferInUse());
  tags.TakeBuffer(0);  // answered: not the old socket's to drain
  EXPECT_FALSE(tags.AnyUnansweredBufferInUse());
  tags.TakeBuffer(1);
  EXPECT_TRUE(tags.AnyUnansweredBufferInUse());
}

TEST(TagTableTest, QueueStartsEachRequestAfresh) {
  TagTable tags(1);
  SendOne(tags, 0, 1);
  tags[0].fill_errno = -EIO;
  tags[0].register_failed = true;
  ASSERT_TRUE(tags.Commit(0));
  ASSERT_TRUE(tags.Arrive(0, {}, 0));
  ASSERT_TRUE(tags.Queue(0, ReadOf(0)));
  EXPECT_EQ(tags[0].attempts, 0);
  EXPECT_EQ(tags[0].fill_errno, 0);
  EXPECT_FALSE(tags[0].register_failed);
  EXPECT_EQ(tags[0].buffer_users, 0);
}

}  // namespace
}  // namespace ublkgw::engine
