#include "engine/remedy.h"

#include "gtest/gtest.h"

namespace ublkgw::engine {
namespace {

TEST(RemedyTest, TravelsWithAStatus) {
  const absl::Status s = WithRemedy(absl::FailedPreconditionError("no"), Remedy::kUseCopyDataPath);
  EXPECT_EQ(RemedyOf(s), Remedy::kUseCopyDataPath);
  EXPECT_EQ(s.message(), "no");
  EXPECT_EQ(RemedyOf(absl::FailedPreconditionError("no")), Remedy::kNone);
  EXPECT_EQ(RemedyOf(WithRemedy(absl::OkStatus(), Remedy::kAllowSocketOps)), Remedy::kNone);
}

TEST(RemedyTest, EveryRemedyTravels) {
  for (int r = 1; r <= static_cast<int>(kLastRemedy); ++r) {
    const auto remedy = static_cast<Remedy>(r);
    EXPECT_EQ(RemedyOf(WithRemedy(absl::InternalError("x"), remedy)), remedy) << r;
  }
}

}  // namespace
}  // namespace ublkgw::engine
