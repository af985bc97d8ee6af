// What stopping the daemon does with the devices it serves: detach them
// (gracefully, sharing one grace period, or forced), or leave each waiting
// in the kernel for the next daemon to take over.
#ifndef UBLKGW_CONTROL_ON_STOP_H_
#define UBLKGW_CONTROL_ON_STOP_H_

#include <memory>
#include <vector>

#include "engine/device.h"

namespace ublkgw::control {

enum class OnStop {
  kDetach,       // graceful detaches sharing one grace period
  kForceDetach,  // requests in flight fail at once
  kKeep,         // each device waits in the kernel for the next daemon
                 // (those made without user recovery are detached)
};

struct StoppingDevice {
  std::shared_ptr<engine::Device> device;
  bool recorded = false;  // its volume is in the state record as it is
};

// Ends every device as `how` says. Graceful detaches share one grace
// period (engine::kGracefulStopTimeout): once it is spent (a silent server
// held one up), the rest are forced, so stopping stays bounded. Only a
// recorded volume's device is left for the next daemon (nothing else could
// take it over); one that cannot be left is detached. Errors are logged.
void StopDevices(std::vector<StoppingDevice> devices, OnStop how);

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_ON_STOP_H_
