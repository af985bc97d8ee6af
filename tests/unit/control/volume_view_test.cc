// A restoring volume as listed: free functions, no manager, no device.
#include "control/volume_view.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ublkgw::control {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(DescribeRestoringTest, ShowsWhatWasAskedAndHowRestoringGoes) {
  v1::AttachRequest asked;
  asked.set_uri("nbd://127.0.0.1/a");
  asked.set_queues(4);
  asked.set_reconnect_deadline_ms(0);
  RestoreProgress progress;
  progress.error = "the server refused";
  const absl::Time now = absl::FromUnixSeconds(1000);
  progress.next_try = now + absl::Milliseconds(2500);
  const v1::Volume v = DescribeRestoring(7, asked, progress, engine::ReconnectPolicy{}, now);
  EXPECT_EQ(v.device_id(), 7u);
  EXPECT_EQ(v.device_path(), "/dev/ublkb7");
  EXPECT_EQ(v.uri(), "nbd://127.0.0.1:10809/a");  // canonical
  EXPECT_EQ(v.queues(), 4u);
  EXPECT_EQ(v.depth(), 128u);
  EXPECT_EQ(v.io_timeout_ms(), 30'000u);         // the daemon's
  EXPECT_EQ(v.reconnect_deadline_ms(), 0u);      // the volume's own
  EXPECT_EQ(v.health(), v1::HEALTH_RESTORING);
  EXPECT_EQ(v.health_detail(),
            "recorded, not attached yet: the server refused (next attempt in 2s)");
}

TEST(DescribeRestoringTest, ALeftDeviceAndARecordNeverTried) {
  v1::AttachRequest asked;
  asked.set_uri("not a uri");
  RestoreProgress progress;
  progress.left_in_kernel = true;
  progress.next_try = absl::InfiniteFuture();
  const v1::Volume v =
      DescribeRestoring(1, asked, progress, engine::ReconnectPolicy{}, absl::Now());
  EXPECT_EQ(v.uri(), "not a uri");  // as recorded
  EXPECT_THAT(v.health_detail(), HasSubstr("waits in the kernel"));
  EXPECT_THAT(v.health_detail(), Not(HasSubstr("next attempt")));
}

TEST(MsTest, WholeMilliseconds) {
  EXPECT_EQ(Ms(absl::Microseconds(2'999)), 2u);
  EXPECT_EQ(Ms(absl::Seconds(120)), 120'000u);
}

}  // namespace
}  // namespace ublkgw::control
