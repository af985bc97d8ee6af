#include "control/remedy_words.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ublkgw::control {
namespace {

using ::testing::HasSubstr;

TEST(RemedyWordsTest, EveryRemedyNamesWhatToChange) {
  EXPECT_EQ(RemedyWords(engine::Remedy::kNone), "");
  EXPECT_THAT(RemedyWords(engine::Remedy::kUseCopyDataPath), HasSubstr("--data-path"));
  EXPECT_THAT(RemedyWords(engine::Remedy::kEnableSendZc), HasSubstr("--send-zc-min-bytes"));
  EXPECT_THAT(RemedyWords(engine::Remedy::kAllowSocketOps), HasSubstr("--disable-socket-ops"));
  EXPECT_THAT(RemedyWords(engine::Remedy::kAllowUserRecovery),
              HasSubstr("--disable-ublk-features user-recovery"));
  EXPECT_THAT(RemedyWords(engine::Remedy::kUseZeroCopyDataPath),
              HasSubstr("--data-path auto (or zero-copy)"));
  for (int r = 1; r <= static_cast<int>(engine::kLastRemedy); ++r) {
    EXPECT_NE(RemedyWords(static_cast<engine::Remedy>(r)), "") << r;
  }
}

TEST(RemedyWordsTest, ExplainAppendsTheWordsAndKeepsTheCode) {
  const absl::Status s = Explain(engine::WithRemedy(
      absl::FailedPreconditionError("zero copy is not possible"), engine::Remedy::kUseCopyDataPath));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("zero copy is not possible; attach with --data-path"));
  EXPECT_EQ(Explain(absl::UnavailableError("down")).message(), "down");
  EXPECT_EQ(Explain("zero copy (no SEND_ZC unless asked)", engine::Remedy::kEnableSendZc),
            "zero copy (no SEND_ZC unless asked) (ublkgwd --send-zc-min-bytes enables it)");
  EXPECT_EQ(Explain("copy", engine::Remedy::kNone), "copy");
}

}  // namespace
}  // namespace ublkgw::control
