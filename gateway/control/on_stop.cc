#include "control/on_stop.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "glog/logging.h"

namespace ublkgw::control {

void StopDevices(std::vector<StoppingDevice> devices, OnStop how) {
  const absl::Time grace_end = absl::Now() + engine::kGracefulStopTimeout;
  if (how == OnStop::kKeep) {
    // Their queues drain their requests in flight at once, not one by one.
    for (auto& [device, recorded] : devices) {
      if (recorded) device->BeginLeave();
    }
  }
  for (auto& [device, recorded] : devices) {
    if (how == OnStop::kKeep) {
      absl::Status s = recorded ? device->Leave()
                                : absl::FailedPreconditionError(absl::StrCat(
                                      device->block_path(), " is not recorded"));
      if (s.ok()) continue;
      LOG(WARNING) << s << ": detaching it";
    }
    const bool forced = how == OnStop::kForceDetach || absl::Now() >= grace_end;
    if (absl::Status s = device->Detach(forced); !s.ok()) {
      LOG(ERROR) << "detaching " << device->block_path() << ": " << s;
    }
  }
}

}  // namespace ublkgw::control
