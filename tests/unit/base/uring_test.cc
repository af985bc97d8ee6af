#include "base/uring.h"

#include <vector>

#include "absl/time/clock.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw {
namespace {

using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::StatusIs;

TEST(RingTest, NopRoundTripWithSqe128) {
  auto ring = Ring::Create(8, IORING_SETUP_SQE128);
  ASSERT_THAT(ring, IsOk());
  io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
  ASSERT_NE(sqe, nullptr);
  io_uring_prep_nop(sqe);
  sqe->user_data = 0x1234;
  auto cqe = ring->SubmitAndWait(absl::Seconds(5));
  ASSERT_THAT(cqe, IsOk());
  EXPECT_EQ((*cqe)->user_data, 0x1234u);
  EXPECT_EQ((*cqe)->res, 0);
  io_uring_cqe_seen(ring->get(), *cqe);
}

TEST(RingTest, SurvivesMove) {
  auto created = Ring::Create(4, 0);
  ASSERT_THAT(created, IsOk());
  Ring ring = *std::move(created);
  io_uring_prep_nop(io_uring_get_sqe(ring.get()));
  auto cqe = ring.SubmitAndWait(absl::Seconds(5));
  ASSERT_THAT(cqe, IsOk());
  io_uring_cqe_seen(ring.get(), *cqe);
}

TEST(RingTest, WaitTimesOutWithoutWork) {
  auto ring = Ring::Create(4, 0);
  ASSERT_THAT(ring, IsOk());
  EXPECT_THAT(ring->SubmitAndWait(absl::Milliseconds(20)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST(RingTest, BadFlagsAreAnError) {
  // Unknown setup flag bits are refused by every kernel.
  EXPECT_THAT(Ring::Create(4, 1U << 31), StatusIs(absl::StatusCode::kInvalidArgument));
}

// The user_data of every completion waiting in `ring`, consumed.
std::vector<uint64_t> Reap(Ring& ring) {
  std::vector<uint64_t> seen;
  io_uring_cqe* cqe;
  unsigned head, n = 0;
  io_uring_for_each_cqe(ring.get(), head, cqe) {
    seen.push_back(cqe->user_data);
    ++n;
  }
  io_uring_cq_advance(ring.get(), n);
  return seen;
}

// SubmitAndWaitMin publishes SQEs itself, as liburing would: round after
// round, past the end of the SQ ring, each NOP is submitted once and
// completes with its own user_data; with the ring fd registered or not,
// and interleaved with liburing's own submits.
TEST(RingTest, SubmitAndWaitMinSubmitsWhatIsQueued) {
  for (bool registered : {false, true}) {
    auto ring = Ring::Create(8, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
    ASSERT_THAT(ring, IsOk());
    if (!ring->has_min_wait()) GTEST_SKIP() << "this kernel has no IORING_FEAT_MIN_TIMEOUT";
    if (registered) {
      ASSERT_EQ(io_uring_register_ring_fd(ring->get()), 1);
    }
    uint64_t next = 1;
    for (int round = 0; round < 20; ++round) {
      const unsigned n = 1 + round % 8;
      std::vector<uint64_t> want;
      for (unsigned i = 0; i < n; ++i) {
        io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
        ASSERT_NE(sqe, nullptr);
        io_uring_prep_nop(sqe);
        sqe->user_data = next;
        want.push_back(next++);
      }
      if (round % 5 == 4) {  // liburing's submit, then ours with nothing new
        ASSERT_EQ(io_uring_submit(ring->get()), static_cast<int>(n));
        const __kernel_timespec ts{5, 0};
        ASSERT_EQ(ring->SubmitAndWaitMin(n, ts, 1000), 0);
      } else {
        const __kernel_timespec ts{5, 0};
        ASSERT_EQ(ring->SubmitAndWaitMin(n, ts, 1000), static_cast<int>(n)) << round;
      }
      EXPECT_EQ(Reap(*ring), want) << "round " << round << ", registered " << registered;
    }
  }
}

// Waiting for two completions when one comes: it returns with that one
// once the minimum wait has passed, not at the (far) timeout; with none,
// at the timeout, -ETIME.
TEST(RingTest, SubmitAndWaitMinReturnsWithFewerAfterTheMinimum) {
  auto ring = Ring::Create(8, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
  ASSERT_THAT(ring, IsOk());
  if (!ring->has_min_wait()) GTEST_SKIP() << "this kernel has no IORING_FEAT_MIN_TIMEOUT";
  __kernel_timespec in_20ms{0, 20'000'000};
  io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
  io_uring_prep_timeout(sqe, &in_20ms, 0, 0);
  sqe->user_data = 7;
  const absl::Time start = absl::Now();
  const __kernel_timespec far{60, 0};
  ASSERT_EQ(ring->SubmitAndWaitMin(2, far, 1000), 1);
  // The completion may come after the call returns only if it returned at
  // once; wait for it with liburing, bounded.
  io_uring_cqe* cqe;
  __kernel_timespec bound{10, 0};
  ASSERT_EQ(io_uring_wait_cqe_timeout(ring->get(), &cqe, &bound), 0);
  EXPECT_EQ(Reap(*ring), std::vector<uint64_t>{7});
  EXPECT_LT(absl::Now() - start, absl::Seconds(30)) << "it waited for the second completion";

  const __kernel_timespec short_timeout{0, 30'000'000};
  EXPECT_EQ(ring->SubmitAndWaitMin(2, short_timeout, 1000), -ETIME);
  EXPECT_TRUE(Reap(*ring).empty());
}

}  // namespace
}  // namespace ublkgw
