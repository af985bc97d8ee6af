// A restarted daemon takes over only a device that carries its volume's
// mark and waits for a server; it never touches another server's device.
#include "control/left_device.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ublkgw::control {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kCookie = 0x5eed'1234'abcd'0001;
constexpr uint64_t kRecovery = ublk::kFUserRecovery | ublk::kFUserRecoveryReissue;

v1::AttachmentRecord Record(uint64_t cookie = kCookie) {
  v1::AttachmentRecord r;
  r.set_device_id(3);
  r.mutable_request()->set_uri("nbd://127.0.0.1/x");
  r.set_device_cookie(cookie);
  return r;
}

ublk::ublksrv_ctrl_dev_info Device(ublk::DevState state, uint64_t cookie = kCookie,
                                   uint64_t flags = kRecovery) {
  ublk::ublksrv_ctrl_dev_info d{};
  d.dev_id = 3;
  d.nr_hw_queues = 2;
  d.state = static_cast<uint16_t>(state);
  d.ublksrv_pid = -1;
  d.flags = flags | ublk::kFCmdIoctlEncode;
  d.ublksrv_flags = cookie;
  return d;
}

TEST(JudgeLeftDeviceTest, OurQuiescedDeviceIsTakenOver) {
  const LeftDevice left = JudgeLeftDevice(Record(), Device(ublk::DevState::kQuiesced));
  EXPECT_EQ(left.verdict, LeftVerdict::kAdopt);
  EXPECT_THAT(left.why, HasSubstr("/dev/ublkb3"));
  EXPECT_EQ(left.dev.nr_hw_queues, 2);  // the take-over connects one per queue
}

TEST(JudgeLeftDeviceTest, OurDeviceStillServedIsWaitedFor) {
  EXPECT_EQ(JudgeLeftDevice(Record(), Device(ublk::DevState::kLive)).verdict, LeftVerdict::kWait);
}

TEST(JudgeLeftDeviceTest, AnotherServersDeviceIsNeverTouched) {
  // Same id, waiting for a server, but another mark (another daemon's
  // volume, or the id reused): not ours, whatever its state or pid.
  for (auto state : {ublk::DevState::kQuiesced, ublk::DevState::kLive, ublk::DevState::kFailIo}) {
    const LeftDevice left = JudgeLeftDevice(Record(), Device(state, kCookie + 1));
    EXPECT_EQ(left.verdict, LeftVerdict::kNone);
    EXPECT_THAT(left.why, HasSubstr("another device"));
  }
  EXPECT_EQ(JudgeLeftDevice(Record(), Device(ublk::DevState::kQuiesced, 0)).verdict,
            LeftVerdict::kNone);
}

TEST(JudgeLeftDeviceTest, ARecordWithoutAMarkClaimsNothing) {
  // An older daemon's record, or a volume made without recovery.
  EXPECT_EQ(JudgeLeftDevice(Record(0), Device(ublk::DevState::kQuiesced, 0)).verdict,
            LeftVerdict::kNone);
}

TEST(JudgeLeftDeviceTest, AGoneOrStoppedDeviceIsMadeAgain) {
  EXPECT_EQ(JudgeLeftDevice(Record(), absl::NotFoundError("no such device")).verdict,
            LeftVerdict::kNone);
  EXPECT_EQ(JudgeLeftDevice(Record(), Device(ublk::DevState::kDead)).verdict, LeftVerdict::kNone);
  // Ours but made without recovery: the kernel stopped it.
  EXPECT_EQ(JudgeLeftDevice(Record(), Device(ublk::DevState::kQuiesced, kCookie, 0)).verdict,
            LeftVerdict::kNone);
}

TEST(JudgeLeftDeviceTest, AKernelThatCannotBeAskedIsAskedAgain) {
  // Never a new device while ours might still wait at the recorded id.
  const LeftDevice left = JudgeLeftDevice(Record(), absl::PermissionDeniedError("EPERM"));
  EXPECT_EQ(left.verdict, LeftVerdict::kRetry);
  EXPECT_THAT(left.why, HasSubstr("EPERM"));
}

}  // namespace
}  // namespace ublkgw::control
