// What the daemon tells its volume manager: where the ublk driver and the
// state record are, how restoring retries, and the operator's say in every
// device's data path and reconnects.
#ifndef UBLKGW_CONTROL_MANAGER_OPTIONS_H_
#define UBLKGW_CONTROL_MANAGER_OPTIONS_H_

#include <string>

#include "absl/time/time.h"
#include "engine/data_path.h"
#include "engine/reconnect.h"
#include "ublk/control_device.h"

namespace ublkgw::control {

struct ManagerOptions {
  std::string control_path = ublk::kControlDevicePath;
  // Where attachments are recorded; empty: nowhere (nothing is restored).
  std::string state_dir;
  // First and longest wait between attempts to restore a recorded volume.
  absl::Duration restore_backoff_min = absl::Seconds(1);
  absl::Duration restore_backoff_max = absl::Seconds(60);
  // The operator's say in every device's data path: SEND_ZC's threshold,
  // and socket ops and ublk features ruled out.
  engine::DataPathTuning tuning;
  // What a device's queues do when their connection fails.
  engine::ReconnectPolicy reconnect;
};

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_MANAGER_OPTIONS_H_
