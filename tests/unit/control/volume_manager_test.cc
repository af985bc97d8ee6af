// Request validation of the control plane, on a host without ublk: bad
// requests are INVALID_ARGUMENT before anything is touched; a good one
// reaches the kernel check and fails FAILED_PRECONDITION with the reason.
#include "control/volume_manager.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw::control {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::ublkgw::testing::StatusIs;

v1::AttachRequest Request(const std::string& uri, uint32_t queues = 0, uint32_t depth = 0) {
  v1::AttachRequest r;
  r.set_uri(uri);
  r.set_queues(queues);
  r.set_depth(depth);
  return r;
}

class VolumeManagerTest : public ::testing::Test {
 protected:
  VolumeManager volumes_{"/nonexistent/ublk-control"};
};

TEST_F(VolumeManagerTest, BadRequestsAreInvalidArguments) {
  EXPECT_THAT(volumes_.Attach(Request("")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no URI")));
  EXPECT_THAT(volumes_.Attach(Request("nbd://h/" + std::string(5000, 'x'))),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the limit is 4096")));
  EXPECT_THAT(volumes_.Attach(Request("ftp://h/x")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown scheme")));
  EXPECT_THAT(volumes_.Attach(Request("nbd://h/x", 65)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("queues must be 1 to 64")));
  EXPECT_THAT(volumes_.Attach(Request("nbd://h/x", 1, 5000)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("depth must be 1 to 1024")));
  auto bad_path = Request("nbd://h/x");
  bad_path.set_data_path(static_cast<v1::DataPath>(42));
  EXPECT_THAT(volumes_.Attach(bad_path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("data path")));
}

TEST_F(VolumeManagerTest, AGoodRequestNeedsTheUblkDriver) {
  EXPECT_THAT(volumes_.Attach(Request("nbd://127.0.0.1:1/x", 2, 64)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ublk")));
  EXPECT_THAT(volumes_.List(), IsEmpty());
}

TEST_F(VolumeManagerTest, DetachNamesWhatIsMissing) {
  v1::DetachRequest none;
  EXPECT_THAT(volumes_.Detach(none), StatusIs(absl::StatusCode::kInvalidArgument));
  v1::DetachRequest by_path;
  by_path.set_device_path("/dev/ublkb3");
  EXPECT_THAT(volumes_.Detach(by_path),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/dev/ublkb3")));
  v1::DetachRequest by_id;
  by_id.set_device_id(3);
  EXPECT_THAT(volumes_.Detach(by_id), StatusIs(absl::StatusCode::kNotFound, HasSubstr("ublkgw list")));
}

TEST_F(VolumeManagerTest, FeaturesNeedTheUblkDriver) {
  EXPECT_THAT(volumes_.GetFeatures(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace ublkgw::control
