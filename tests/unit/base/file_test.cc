#include "base/file.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw {
namespace {

using ::testing::HasSubstr;
using ::ublkgw::testing::IsOkAndHolds;
using ::ublkgw::testing::StatusIs;

TEST(ReadFileToStringTest, ReadsAllOfIt) {
  const std::string path = ::testing::TempDir() + "/file_test.txt";
  const std::string text(40000, 'x');  // more than one read
  std::ofstream(path) << text << "end";
  EXPECT_THAT(ReadFileToString(path), IsOkAndHolds(text + "end"));
}

TEST(ReadFileToStringTest, AMissingFileIsNotFoundAndNamed) {
  EXPECT_THAT(ReadFileToString("/nonexistent/x.pem"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/x.pem: No such file")));
}

}  // namespace
}  // namespace ublkgw
