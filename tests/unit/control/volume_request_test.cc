// Requests checked before anything is touched: free functions, no manager.
#include "control/volume_request.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw::control {
namespace {

using ::testing::HasSubstr;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::StatusIs;

TEST(ValidateAttachRequestTest, UnsetFieldsTakeTheDefaults) {
  v1::AttachRequest r;
  r.set_uri("nbd://127.0.0.1/x");
  auto options = ValidateAttachRequest(r);
  ASSERT_THAT(options, IsOk());
  EXPECT_EQ(options->uri, "nbd://127.0.0.1/x");
  EXPECT_EQ(options->queues, 1);
  EXPECT_EQ(options->depth, 128);
  EXPECT_EQ(options->data_path, engine::DataPathMode::kAuto);
  EXPECT_FALSE(options->read_only);
}

TEST(ValidateAttachRequestTest, NamesWhatIsWrong) {
  v1::AttachRequest r;
  EXPECT_THAT(ValidateAttachRequest(r),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no URI")));
  r.set_uri("nbd://h/x");
  r.set_queues(65);
  EXPECT_THAT(ValidateAttachRequest(r), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 HasSubstr("queues must be 1 to 64")));
  r.set_queues(2);
  r.set_data_path(v1::DATA_PATH_ZERO_COPY);
  auto options = ValidateAttachRequest(r);
  ASSERT_THAT(options, IsOk());
  EXPECT_EQ(options->queues, 2);
  EXPECT_EQ(options->data_path, engine::DataPathMode::kZeroCopy);
}

TEST(AttachOptionsForTest, TheVolumesTimeoutsOverrideTheDaemons) {
  ManagerOptions daemon;
  daemon.reconnect.io_timeout = absl::Seconds(30);
  daemon.reconnect.reconnect_deadline = absl::Seconds(120);
  daemon.tuning.send_zc_min_bytes = 4096;
  v1::AttachRequest r;
  r.set_uri("nbd://h/x");
  r.set_io_timeout_ms(7'000);
  auto options = AttachOptionsFor(r, daemon);
  ASSERT_THAT(options, IsOk());
  EXPECT_EQ(options->reconnect.io_timeout, absl::Seconds(7));
  EXPECT_EQ(options->reconnect.reconnect_deadline, absl::Seconds(120));
  EXPECT_EQ(options->tuning.send_zc_min_bytes, 4096u);
}

TEST(RefOfTest, ByIdByPathOrNeither) {
  v1::DetachRequest r;
  EXPECT_THAT(RefOf(r), StatusIs(absl::StatusCode::kInvalidArgument));
  r.set_device_path("/dev/ublkb4");
  ASSERT_THAT(RefOf(r), IsOk());
  EXPECT_EQ(RefOf(r)->path, "/dev/ublkb4");
  r.set_device_id(4);
  EXPECT_EQ(RefOf(r)->id, 4u);
  EXPECT_THAT(VolumeNotFound(*RefOf(r)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("ublkgw list")));
}

TEST(MayOutliveTest, OnlyWithARecordAndKeepingTheVolumesMark) {
  engine::AttachOptions unrecorded;
  MayOutlive(/*recording=*/false, 0, unrecorded);
  EXPECT_FALSE(unrecorded.outlive_daemon);
  EXPECT_THAT(unrecorded.why_not_outlive, HasSubstr("--state-dir"));
  engine::AttachOptions kept;
  MayOutlive(true, 0x5eed, kept);
  EXPECT_TRUE(kept.outlive_daemon);
  EXPECT_EQ(kept.device_cookie, 0x5eedu);
  engine::AttachOptions fresh;
  MayOutlive(true, 0, fresh);
  EXPECT_NE(fresh.device_cookie, 0u);
}

}  // namespace
}  // namespace ublkgw::control
