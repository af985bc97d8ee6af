// A device a previous ublkgwd may have left in the kernel for a recorded
// volume (crashed, or stopped with --on-stop keep), and what the next
// daemon does with it. Pure: the kernel is asked by the caller.
#ifndef UBLKGW_CONTROL_LEFT_DEVICE_H_
#define UBLKGW_CONTROL_LEFT_DEVICE_H_

#include <string>

#include "absl/status/statusor.h"
#include "ublk/uapi.h"
#include "ublkgw/v1/state.pb.h"

namespace ublkgw::control {

enum class LeftVerdict {
  kNone,   // no device of this volume's at its id: make one (another id if taken)
  kAdopt,  // its device waits for a server (quiesced): take it over
  kWait,   // its device is still served (the old daemon is exiting): ask again soon
  kRetry,  // the kernel could not be asked: ask again
};

struct LeftDevice {
  LeftVerdict verdict = LeftVerdict::kNone;
  std::string why;                  // for the log and the volume's health detail
  ublk::ublksrv_ctrl_dev_info dev{};  // the device (kAdopt)
};

// `dev` is GET_DEV_INFO for record.device_id(). A device is the volume's
// only if it carries the record's cookie (in ublksrv_flags): never one of
// another server's, nor one a device id was reused for.
LeftDevice JudgeLeftDevice(const v1::AttachmentRecord& record,
                           const absl::StatusOr<ublk::ublksrv_ctrl_dev_info>& dev);

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_LEFT_DEVICE_H_
