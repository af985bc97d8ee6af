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

}  // namespace
}  // namespace ublkgw::engine
