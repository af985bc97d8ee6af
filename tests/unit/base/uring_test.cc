#include "base/uring.h"

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

}  // namespace
}  // namespace ublkgw
