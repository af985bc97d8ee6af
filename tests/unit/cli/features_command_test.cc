#include "cli/features_command.h"

#include <sstream>

#include "cli/exit_codes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ublkgw::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(FeaturesCommandTest, TableListsEveryKnownFeatureWithYesOrNo) {
  const std::string table = RenderFeaturesTable({"/dev/ublk-control", "6.12.1", 0x1fe});
  EXPECT_THAT(table, HasSubstr("0x00000000000001fe (8 of the 21 features"));
  EXPECT_THAT(table, HasSubstr("Linux 6.12.1"));
  EXPECT_THAT(table, HasSubstr("  7  yes        UBLK_F_USER_COPY"));
  EXPECT_THAT(table, HasSubstr(" 11  no         UBLK_F_AUTO_BUF_REG"));
  // kernel/patches' bit stands apart, under its own number.
  EXPECT_THAT(table, HasSubstr(" 48  no         UBLK_F_FUSED_CMD"));
  EXPECT_THAT(table, Not(HasSubstr("(unknown)")));
}

TEST(FeaturesCommandTest, TableShowsBitsNewerThanThisBuild) {
  const std::string table = RenderFeaturesTable({"/dev/ublk-control", "9.0", 1ULL << 40});
  EXPECT_THAT(table, HasSubstr(" 40  yes        (unknown)"));
}

TEST(FeaturesCommandTest, JsonSplitsSupportedAndUnsupported) {
  const auto json = FeaturesJson({"/dev/ublk-control", "7.2", 0xfffff | (1ULL << 21)});
  EXPECT_EQ(json["mask"], "0x00000000002fffff");
  EXPECT_EQ(json["supported"].size(), 20u);
  EXPECT_THAT(json["unsupported"].get<std::vector<std::string>>(), ElementsAre("UBLK_F_FUSED_CMD"));
  EXPECT_THAT(json["unknown_bits"].get<std::vector<int>>(), ElementsAre(21));
  EXPECT_EQ(json["supported"][11], "UBLK_F_AUTO_BUF_REG");
}

TEST(FeaturesCommandTest, MissingDriverExitsWithItsOwnCodeAndJsonError) {
  std::ostringstream out, err;
  const int code = RunFeatures({"/nonexistent/ublk-control", /*json=*/true}, out, err);
  EXPECT_EQ(code, kExitNoUblk);
  EXPECT_THAT(err.str(), HasSubstr("ublkgw: error: /nonexistent/ublk-control does not exist"));
  const auto json = nlohmann::json::parse(out.str());
  EXPECT_EQ(json["error"]["code"], "FAILED_PRECONDITION");
}

TEST(FeaturesCommandTest, WrongDeviceIsAUsageError) {
  std::ostringstream out, err;
  EXPECT_EQ(RunFeatures({"/dev/null", /*json=*/false}, out, err), kExitUsage);
  EXPECT_THAT(err.str(), HasSubstr("not the ublk control device"));
  EXPECT_EQ(out.str(), "");
}

TEST(ExitCodesTest, OneCodePerKindOfFailure) {
  EXPECT_EQ(ExitCodeFor(absl::OkStatus()), kExitOk);
  EXPECT_EQ(ExitCodeFor(absl::FailedPreconditionError("")), kExitNoUblk);
  EXPECT_EQ(ExitCodeFor(absl::UnimplementedError("")), kExitKernelTooOld);
  EXPECT_EQ(ExitCodeFor(absl::PermissionDeniedError("")), kExitPermission);
  EXPECT_EQ(ExitCodeFor(absl::InvalidArgumentError("")), kExitUsage);
  EXPECT_EQ(ExitCodeFor(absl::UnavailableError("")), kExitUnreachable);
  EXPECT_EQ(ExitCodeFor(absl::DeadlineExceededError("")), kExitUnreachable);
  EXPECT_EQ(ExitCodeFor(absl::NotFoundError("")), kExitNotFound);
  EXPECT_EQ(ExitCodeFor(absl::DataLossError("")), kExitProtocol);
  EXPECT_EQ(ExitCodeFor(absl::InternalError("")), kExitError);
}

}  // namespace
}  // namespace ublkgw::cli
