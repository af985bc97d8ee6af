// The host's ublk driver as the volume manager uses it: queries on the daemon's
// shared control device, the removal of a device a previous daemon left,
// and the making of devices (engine::Device, each with a control device of
// its own). OpenUblkHost gives the real one; a test gives a fake, so the
// manager can be tested on a host without ublk.
#ifndef UBLKGW_CONTROL_UBLK_HOST_H_
#define UBLKGW_CONTROL_UBLK_HOST_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "control/left_device.h"
#include "engine/device.h"
#include "engine/export_connection.h"
#include "ublk/uapi.h"
#include "ublkgw/v1/state.pb.h"

namespace ublkgw::control {

// Thread-safe. Check, GetFeatures, GetDevInfo and RemoveDevice share one
// control device and run one at a time, each a few kernel commands bounded
// by the control device's timeout. Create and Adopt share nothing: they run
// concurrently with each other and with the rest.
class UblkHost {
 public:
  virtual ~UblkHost() = default;

  // Whether the control device opens: FAILED_PRECONDITION without the ublk
  // driver (the error says how to load it), PERMISSION_DENIED without root.
  virtual absl::Status Check() = 0;
  // The driver's ublk::kF* features (UBLK_U_CMD_GET_FEATURES).
  virtual absl::StatusOr<uint64_t> GetFeatures() = 0;
  // GET_DEV_INFO of /dev/ublkc`id`: NOT_FOUND when there is none.
  virtual absl::StatusOr<ublk::ublksrv_ctrl_dev_info> GetDevInfo(uint32_t id) = 0;
  // STOP_DEV then DEL_DEV of `id`: for a device no server holds (one a
  // previous daemon left), whose waiting requests fail with EIO.
  virtual absl::Status RemoveDevice(uint32_t id) = 0;
  // engine::Device::Create and Adopt on this driver's control device path.
  virtual absl::StatusOr<std::unique_ptr<engine::Device>> Create(
      const engine::AttachOptions& options, engine::ConnectedExport connected) = 0;
  virtual absl::StatusOr<std::unique_ptr<engine::Device>> Adopt(
      const engine::AttachOptions& options, engine::ConnectedExport connected) = 0;
};

// The kernel's driver behind `control_path`, whose control device is opened
// on first use (so a daemon started before ublk_drv is loaded works once it
// is).
std::unique_ptr<UblkHost> OpenUblkHost(std::string control_path);

// Asks `driver` about the device a previous daemon may have left for
// `record` (JudgeLeftDevice). Without a ublk driver, none can be left.
LeftDevice AskLeftDevice(UblkHost& driver, const v1::AttachmentRecord& record);
// Stops and deletes the device a previous daemon left waiting for `record`
// (if any); UNAVAILABLE while that daemon still lets go of it, or the
// kernel cannot be asked.
absl::Status RemoveLeftDevice(UblkHost& driver, const v1::AttachmentRecord& record);

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_UBLK_HOST_H_
