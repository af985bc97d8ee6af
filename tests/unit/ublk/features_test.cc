#include "ublk/features.h"

#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ublk/uapi.h"

namespace ublkgw::ublk {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(FeaturesTest, TableHasTwentyOneUniqueNames) {
  std::set<std::string> names;
  for (const auto& f : KnownFeatures()) {
    EXPECT_TRUE(std::string(f.name).starts_with("UBLK_F_")) << f.name;
    EXPECT_FALSE(f.summary.empty()) << f.name;
    names.insert(std::string(f.name));
  }
  EXPECT_EQ(names.size(), 21u);  // mainline's 20 and kernel/patches' one
}

TEST(FeaturesTest, NamesTheBitsOfAMask) {
  // Debian 13's 6.12 kernel reports 0x1fe.
  std::vector<std::string> names;
  for (const auto& f : FeaturesIn(0x1fe)) names.emplace_back(f.name);
  EXPECT_THAT(names, ElementsAre("UBLK_F_URING_CMD_COMP_IN_TASK", "UBLK_F_NEED_GET_DATA",
                                 "UBLK_F_USER_RECOVERY", "UBLK_F_USER_RECOVERY_REISSUE",
                                 "UBLK_F_UNPRIVILEGED_DEV", "UBLK_F_CMD_IOCTL_ENCODE",
                                 "UBLK_F_USER_COPY", "UBLK_F_ZONED"));
  EXPECT_THAT(UnknownFeatureBits(0x1fe), IsEmpty());
}

TEST(FeaturesTest, SpecificFlagsHaveTheKernelsNames) {
  auto one = [](uint64_t flag) { return std::string(FeaturesIn(flag).at(0).name); };
  EXPECT_EQ(one(kFAutoBufReg), "UBLK_F_AUTO_BUF_REG");
  EXPECT_EQ(one(kFSupportZeroCopy), "UBLK_F_SUPPORT_ZERO_COPY");
  EXPECT_EQ(one(kFUserRecoveryReissue), "UBLK_F_USER_RECOVERY_REISSUE");
  EXPECT_EQ(one(kFShmemZc), "UBLK_F_SHMEM_ZC");
  EXPECT_EQ(one(kFFusedCmd), "UBLK_F_FUSED_CMD");
}

TEST(FeaturesTest, UnknownBitsAreReportedNotDropped) {
  const uint64_t mask = 0xfffff | (1ULL << 20) | (1ULL << 47) | (1ULL << 48) | (1ULL << 63);
  EXPECT_EQ(FeaturesIn(mask).size(), 21u);
  EXPECT_THAT(UnknownFeatureBits(mask), ElementsAre(20, 47, 63));
}

TEST(FeaturesTest, EmptyMask) {
  EXPECT_THAT(FeaturesIn(0), IsEmpty());
  EXPECT_THAT(UnknownFeatureBits(0), IsEmpty());
}

}  // namespace
}  // namespace ublkgw::ublk
