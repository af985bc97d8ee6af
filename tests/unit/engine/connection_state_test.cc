// ConnectionState: every transition of a queue's connection, and what each
// state lets the worker do.
#include "engine/connection_state.h"

#include "gtest/gtest.h"

namespace ublkgw::engine {
namespace {

constexpr uint64_t kSecond = 1000000000;
constexpr absl::Duration kDeadline = absl::Seconds(10);

TEST(ConnectionStateTest, UpSendsAndFailsNothing) {
  ConnectionState c(/*reconnect=*/true);
  EXPECT_EQ(c.state(), ConnState::kUp);
  EXPECT_TRUE(c.socket_live());
  EXPECT_TRUE(c.may_send());
  EXPECT_FALSE(c.fails_io());
  EXPECT_FALSE(c.draining());
  EXPECT_FALSE(c.accepts_socket());
  EXPECT_EQ(c.link(), Link::kUp);
}

TEST(ConnectionStateTest, ALostConnectionDrainsThenWaitsForTheNextSocket) {
  ConnectionState c(/*reconnect=*/true);
  EXPECT_TRUE(c.Lose(100 * kSecond));
  EXPECT_EQ(c.state(), ConnState::kLost);
  EXPECT_FALSE(c.socket_live());
  EXPECT_FALSE(c.may_send());
  EXPECT_FALSE(c.fails_io());  // requests wait
  EXPECT_TRUE(c.draining());
  EXPECT_FALSE(c.accepts_socket());  // not before the old socket's ops are done
  EXPECT_EQ(c.link(), Link::kReconnecting);
  EXPECT_FALSE(c.Up(101 * kSecond));
  c.Drained();
  EXPECT_EQ(c.state(), ConnState::kReconnecting);
  EXPECT_TRUE(c.accepts_socket());
  EXPECT_TRUE(c.Up(102 * kSecond));
  EXPECT_EQ(c.state(), ConnState::kUp);
  EXPECT_EQ(c.down_since_ns(), 100 * kSecond);
}

TEST(ConnectionStateTest, WithoutReconnectingALostConnectionFailsForGood) {
  ConnectionState c(/*reconnect=*/false);
  EXPECT_FALSE(c.Lose(5 * kSecond));
  EXPECT_EQ(c.state(), ConnState::kLostClosed);
  EXPECT_TRUE(c.fails_io());
  EXPECT_TRUE(c.draining());
  EXPECT_FALSE(c.may_reconnect());
  c.Drained();
  EXPECT_EQ(c.state(), ConnState::kClosed);
  EXPECT_FALSE(c.accepts_socket());
  EXPECT_FALSE(c.Up(6 * kSecond));
  EXPECT_EQ(c.link(), Link::kFailingIo);
}

TEST(ConnectionStateTest, TheDeadlineFailsIoAndANewSocketEndsThat) {
  ConnectionState c(/*reconnect=*/true);
  c.Lose(100 * kSecond);
  EXPECT_FALSE(c.CheckDeadline(109 * kSecond, kDeadline, /*keep_reconnecting=*/true));
  EXPECT_TRUE(c.CheckDeadline(110 * kSecond, kDeadline, /*keep_reconnecting=*/true));
  EXPECT_EQ(c.state(), ConnState::kLostFailing);
  EXPECT_TRUE(c.fails_io());
  EXPECT_TRUE(c.may_reconnect());
  EXPECT_FALSE(c.CheckDeadline(111 * kSecond, kDeadline, true));  // once
  c.Drained();
  EXPECT_EQ(c.state(), ConnState::kFailing);
  EXPECT_EQ(c.link(), Link::kFailingIo);
  EXPECT_TRUE(c.Up(120 * kSecond));
  EXPECT_FALSE(c.fails_io());
}

TEST(ConnectionStateTest, TheDeadlineWithoutKeepReconnectingCloses) {
  ConnectionState c(/*reconnect=*/true);
  c.Lose(0);
  c.Drained();
  EXPECT_TRUE(c.CheckDeadline(10 * kSecond, kDeadline, /*keep_reconnecting=*/false));
  EXPECT_EQ(c.state(), ConnState::kClosed);
  EXPECT_FALSE(c.may_reconnect());
  EXPECT_FALSE(c.accepts_socket());
}

TEST(ConnectionStateTest, ANoDeadlinePolicyWaitsForEver) {
  ConnectionState c(/*reconnect=*/true);
  c.Lose(0);
  EXPECT_FALSE(c.CheckDeadline(1000000 * kSecond, absl::ZeroDuration(), true));
  EXPECT_FALSE(c.fails_io());
}

TEST(ConnectionStateTest, CloseIsForGoodFromEveryLiveState) {
  for (int from = 0; from < 4; ++from) {
    ConnectionState c(/*reconnect=*/true);
    if (from >= 1) c.Lose(0);  // kLost: the socket is already gone
    if (from >= 2) c.Drained();
    if (from >= 3) c.CheckDeadline(20 * kSecond, kDeadline, true);
    EXPECT_EQ(c.Close(), from == 0) << "from state " << from;
    EXPECT_TRUE(c.fails_io());
    EXPECT_FALSE(c.may_reconnect());
    EXPECT_FALSE(c.accepts_socket());
    EXPECT_FALSE(c.Up(30 * kSecond));
  }
}

TEST(ConnectionStateTest, QuickFailuresCountConnectionsThatDieWithinASecond) {
  ConnectionState c(/*reconnect=*/true);
  c.Lose(100 * kSecond);
  EXPECT_EQ(c.quick_failures(), 0);  // it was up long before
  c.Drained();
  c.Up(101 * kSecond);
  c.Lose(101 * kSecond + kSecond / 2);
  EXPECT_EQ(c.quick_failures(), 1);
  c.Drained();
  c.Up(102 * kSecond);
  c.Lose(102 * kSecond + 1);
  EXPECT_EQ(c.quick_failures(), 2);
  c.Drained();
  c.Up(103 * kSecond);
  c.Lose(110 * kSecond);
  EXPECT_EQ(c.quick_failures(), 0);
}

TEST(ConnectionStateTest, LeavingStopsSendingAndLeavesOnceAnswered) {
  ConnectionState c(/*reconnect=*/true);
  c.Leave(10 * kSecond, absl::Seconds(5));
  EXPECT_EQ(c.state(), ConnState::kLeaving);
  EXPECT_TRUE(c.socket_live());  // replies still come in
  EXPECT_FALSE(c.may_send());
  EXPECT_EQ(c.link(), Link::kUp);
  EXPECT_FALSE(c.MaybeLeft(11 * kSecond, /*awaiting=*/3));
  EXPECT_TRUE(c.MaybeLeft(12 * kSecond, /*awaiting=*/0));
  EXPECT_EQ(c.state(), ConnState::kLeft);
  EXPECT_TRUE(c.over());
}

// Shutdown tells a device's queues to leave twice (BeginLeave for every
// device, then Leave): the second order must not cut the first one's wait.
TEST(ConnectionStateTest, ASecondLeaveKeepsTheFirstGrace) {
  ConnectionState c(/*reconnect=*/true);
  c.Leave(10 * kSecond, absl::Seconds(5));
  c.Leave(11 * kSecond, absl::Seconds(5));
  EXPECT_EQ(c.state(), ConnState::kLeaving);
  EXPECT_FALSE(c.MaybeLeft(14 * kSecond, 1));
  EXPECT_TRUE(c.MaybeLeft(15 * kSecond, 1));
}

TEST(ConnectionStateTest, LeavingEndsAfterTheGraceWithRequestsUnanswered) {
  ConnectionState c(/*reconnect=*/true);
  c.Leave(10 * kSecond, absl::Seconds(5));
  EXPECT_FALSE(c.MaybeLeft(14 * kSecond, 2));
  EXPECT_TRUE(c.MaybeLeft(15 * kSecond, 2));
  EXPECT_EQ(c.state(), ConnState::kLeft);
}

TEST(ConnectionStateTest, LeavingWhileDownOrLosingTheSocketWhileLeavingLeavesAtOnce) {
  ConnectionState down(/*reconnect=*/true);
  down.Lose(0);
  down.Leave(kSecond, absl::Seconds(5));
  EXPECT_EQ(down.state(), ConnState::kLeft);

  ConnectionState leaving(/*reconnect=*/true);
  leaving.Leave(0, absl::Seconds(5));
  EXPECT_FALSE(leaving.Lose(kSecond));  // no reconnecting for a queue that leaves
  EXPECT_EQ(leaving.state(), ConnState::kLeft);

  ConnectionState closing(/*reconnect=*/true);
  closing.Leave(0, absl::Seconds(5));
  EXPECT_TRUE(closing.Close());  // the socket was live: abort it
  EXPECT_EQ(closing.state(), ConnState::kLeft);
}

TEST(ConnectionStateTest, ExitNowEndsEverything) {
  ConnectionState c(/*reconnect=*/true);
  c.ExitNow();
  EXPECT_EQ(c.state(), ConnState::kExited);
  EXPECT_TRUE(c.over());
  EXPECT_FALSE(c.socket_live());
  EXPECT_FALSE(c.Lose(0));
  EXPECT_FALSE(c.Close());
  c.Leave(0, absl::Seconds(5));
  EXPECT_EQ(c.state(), ConnState::kExited);
}

TEST(ConnectionStateTest, EveryStateHasAName) {
  for (int s = 0; s <= static_cast<int>(ConnState::kExited); ++s) {
    EXPECT_STRNE(ConnStateName(static_cast<ConnState>(s)), "?");
  }
}

}  // namespace
}  // namespace ublkgw::engine
