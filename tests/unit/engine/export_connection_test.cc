// ConnectExport: an export connected for a device, from a URI, against an
// NBD server on a unix socket (tests/unit/control/fake_nbd_listener.h).
#include "engine/export_connection.h"

#include <filesystem>
#include <string>

#include "control/fake_nbd_listener.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbd/wire.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace ublkgw::engine {
namespace {

using ::testing::HasSubstr;
using ::ublkgw::control::testing::FakeNbdListener;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::StatusIs;

class ExportConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override { std::filesystem::create_directories(dir_); }
  std::string dir_ = ublkgw::testing::FreshTestDir();
};

TEST_F(ExportConnectionTest, OneConnectionPerQueueWhenTheServerAllowsSeveral) {
  FakeNbdListener server(dir_ + "/multi.sock", /*silent=*/false,
                         nbd::kFlagHasFlags | nbd::kFlagCanMultiConn);
  ASSERT_TRUE(server.ok());
  AttachOptions o;
  o.uri = server.Uri("disk");
  o.queues = 3;
  auto c = ConnectExport(o);
  ASSERT_THAT(c.status(), IsOk());
  EXPECT_EQ(c->sockets.size(), 3u);
  EXPECT_EQ(c->info.size, uint64_t{1} << 20);
  EXPECT_EQ(c->note, "");
  EXPECT_GT(c->max_io, 0u);
  EXPECT_EQ(c->params.basic.dev_sectors, uint64_t{1} << 11);
  EXPECT_THAT(c->uri, HasSubstr("multi.sock"));
}

TEST_F(ExportConnectionTest, OneQueueWithANoteWithoutCanMultiConn) {
  FakeNbdListener server(dir_ + "/single.sock", /*silent=*/false);
  ASSERT_TRUE(server.ok());
  AttachOptions o;
  o.uri = server.Uri("disk");
  o.queues = 4;
  auto c = ConnectExport(o);
  ASSERT_THAT(c.status(), IsOk());
  EXPECT_EQ(c->sockets.size(), 1u);
  EXPECT_THAT(c->note, HasSubstr("CAN_MULTI_CONN"));
}

TEST_F(ExportConnectionTest, BadRequestsAreRefusedBeforeConnecting) {
  AttachOptions o;
  o.uri = "nbd://[::1";
  EXPECT_THAT(ConnectExport(o).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  o.uri = "nbd+unix:///disk?socket=" + dir_ + "/none.sock";
  o.queues = 0;
  EXPECT_THAT(ConnectExport(o).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  o.queues = kMaxQueues + 1;
  EXPECT_THAT(ConnectExport(o).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  o.queues = 1;
  o.depth = 0;
  EXPECT_THAT(ConnectExport(o).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  o.depth = kMaxDepth + 1;
  EXPECT_THAT(ConnectExport(o).status(), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(ExportConnectionTest, NoServerIsUnavailable) {
  AttachOptions o;
  o.uri = "nbd+unix:///disk?socket=" + dir_ + "/none.sock";
  EXPECT_THAT(ConnectExport(o).status(), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(ExportConnectionTest, ASilentServerTimesOutWithinTheConnectTimeout) {
  FakeNbdListener server(dir_ + "/silent.sock", /*silent=*/true);
  ASSERT_TRUE(server.ok());
  AttachOptions o;
  o.uri = server.Uri("disk");
  o.connect_timeout = absl::Milliseconds(200);
  const absl::Time start = absl::Now();
  EXPECT_FALSE(ConnectExport(o).ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

}  // namespace
}  // namespace ublkgw::engine
