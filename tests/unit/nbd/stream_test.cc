#include "nbd/stream.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw::nbd {
namespace {

using ::testing::HasSubstr;
using ::ublkgw::testing::StatusIs;

TEST(ConnectTest, TlsIsRefusedClearlyForNow) {
  auto uri = ParseUri("nbds://127.0.0.1/disk");
  ASSERT_TRUE(uri.ok());
  EXPECT_THAT(Connect(*uri, absl::Seconds(1)),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("not supported yet")));
}

TEST(ConnectTest, MissingUnixSocketNamesIt) {
  auto uri = ParseUri("nbd+unix:///disk?socket=/nonexistent/nbd.sock");
  ASSERT_TRUE(uri.ok());
  EXPECT_THAT(Connect(*uri, absl::Seconds(1)),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("/nonexistent/nbd.sock")));
}

TEST(ConnectTest, OverlongUnixSocketPath) {
  Uri uri;
  uri.transport = Uri::Transport::kUnix;
  uri.socket_path = std::string(200, 'a');
  EXPECT_THAT(Connect(uri, absl::Seconds(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the limit is 107")));
}

}  // namespace
}  // namespace ublkgw::nbd
