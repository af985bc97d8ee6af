#include "control/left_device.h"

#include "absl/strings/str_cat.h"
#include "ublk/io_queue.h"

namespace ublkgw::control {

LeftDevice JudgeLeftDevice(const v1::AttachmentRecord& record,
                           const absl::StatusOr<ublk::ublksrv_ctrl_dev_info>& dev) {
  const std::string path = ublk::BlockDevicePath(record.device_id());
  if (record.device_cookie() == 0) return {LeftVerdict::kNone, "no device was marked for it"};
  if (absl::IsNotFound(dev.status())) return {LeftVerdict::kNone, absl::StrCat(path, " is gone")};
  if (!dev.ok()) {
    return {LeftVerdict::kRetry,
            absl::StrCat("cannot tell whether ", path, " waits to be taken over: ",
                         dev.status().message())};
  }
  if (dev->ublksrv_flags != record.device_cookie()) {
    return {LeftVerdict::kNone, absl::StrCat(path, " is another device now")};
  }
  constexpr uint64_t kRecovery = ublk::kFUserRecovery | ublk::kFUserRecoveryReissue;
  switch (static_cast<ublk::DevState>(dev->state)) {
    case ublk::DevState::kLive:
      return {LeftVerdict::kWait,
              absl::StrCat(path, " is still served by the previous ublkgwd; waiting for the "
                                 "kernel to see it gone")};
    case ublk::DevState::kQuiesced:
    case ublk::DevState::kFailIo:
      if ((dev->flags & kRecovery) == kRecovery) {
        return {LeftVerdict::kAdopt,
                absl::StrCat(path, " was left in the kernel by the previous ublkgwd"), *dev};
      }
      break;
    default:
      break;
  }
  return {LeftVerdict::kNone, absl::StrCat(path, " was stopped (its daemon could not keep it)")};
}

}  // namespace ublkgw::control
