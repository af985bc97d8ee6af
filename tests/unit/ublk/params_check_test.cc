// The kernel's SET_PARAMS rules, as CheckParams states them: each refusal
// names its field.
#include "ublk/params_check.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw::ublk {
namespace {


using ::testing::HasSubstr;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::StatusIs;

ublk_params Good() {
  ublk_params p{};
  p.types = kParamTypeBasic;
  p.basic.logical_bs_shift = 9;
  p.basic.physical_bs_shift = 12;
  p.basic.max_sectors = 1024;
  p.basic.dev_sectors = 2048;
  return p;
}

TEST(CheckParamsTest, GoodBasicParams) {
  EXPECT_THAT(CheckParams(Good(), 512 * 1024, 4096), IsOk());
}

TEST(CheckParamsTest, EachBasicRuleNamesItsField) {
  auto p = Good();
  p.types = 0;
  EXPECT_THAT(CheckParams(p, 512 * 1024, 4096), StatusIs(absl::StatusCode::kInvalidArgument));
  p = Good();
  p.basic.logical_bs_shift = 13;
  EXPECT_THAT(CheckParams(p, 512 * 1024, 4096),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("logical_bs_shift")));
  p = Good();
  p.basic.physical_bs_shift = 8;
  EXPECT_THAT(CheckParams(p, 512 * 1024, 4096), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("physical_bs_shift")));
  p = Good();
  EXPECT_THAT(CheckParams(p, 256 * 1024, 4096), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_sectors")));
}

TEST(CheckParamsTest, DiscardNeedsAGranularityAndOneSegment) {
  auto p = Good();
  p.types |= kParamTypeDiscard;
  p.discard.max_write_zeroes_sectors = 8;  // zeroes only, as nbd-server's default export
  EXPECT_THAT(CheckParams(p, 512 * 1024, 4096), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("discard_granularity")));
  p.discard.discard_granularity = 4096;
  EXPECT_THAT(CheckParams(p, 512 * 1024, 4096), IsOk());
  p.discard.max_discard_sectors = 8;
  EXPECT_THAT(CheckParams(p, 512 * 1024, 4096), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_discard_segments")));
  p.discard.max_discard_segments = 1;
  EXPECT_THAT(CheckParams(p, 512 * 1024, 4096), IsOk());
}

}  // namespace
}  // namespace ublkgw::ublk
