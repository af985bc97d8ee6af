// ControlDevice without a ublk driver: the error paths a user meets on a
// host without ublk. The real driver is exercised by the guest scenario
// tests/guest/scenarios/features.sh.
#include "ublk/control_device.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw::ublk {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::ublkgw::testing::StatusIs;

TEST(ControlDeviceTest, MissingDeviceNamesTheCauseAndTheFix) {
  auto device = ControlDevice::Open("/nonexistent/ublk-control");
  if (std::filesystem::exists("/sys/module/ublk_drv")) {
    EXPECT_THAT(device, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("devtmpfs")));
  } else {
    EXPECT_THAT(device, StatusIs(absl::StatusCode::kFailedPrecondition,
                                 AllOf(HasSubstr("/nonexistent/ublk-control"),
                                       HasSubstr("modprobe ublk_drv"),
                                       HasSubstr("CONFIG_BLK_DEV_UBLK"))));
  }
}

TEST(ControlDeviceTest, AnotherCharDeviceIsRefusedByName) {
  // /dev/null would even answer URING_CMDs (with 0): it must be refused
  // before any command is sent.
  EXPECT_THAT(ControlDevice::Open("/dev/null"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("/dev/null is not the ublk control device"),
                             HasSubstr("'null'"))));
}

TEST(ControlDeviceTest, RegularFileIsRefused) {
  const std::string path = ::testing::TempDir() + "/not-ublk-control";
  { std::ofstream(path) << "x"; }
  EXPECT_THAT(ControlDevice::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a character device")));
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace ublkgw::ublk
