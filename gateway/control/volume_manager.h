// The daemon's volumes: every attached device, and the ublk control device
// they share. All control-plane calls go through here, one at a time.
#ifndef UBLKGW_CONTROL_VOLUME_MANAGER_H_
#define UBLKGW_CONTROL_VOLUME_MANAGER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/device.h"
#include "ublk/control_device.h"
#include "ublkgw/v1/ublkgw.pb.h"

namespace ublkgw::control {

inline constexpr size_t kMaxVolumes = 256;

// Thread-safe: every public method takes the manager's mutex (attaching
// holds it while it connects, bounded by the connect timeout).
class VolumeManager {
 public:
  explicit VolumeManager(std::string control_path = ublk::kControlDevicePath)
      : control_path_(std::move(control_path)) {}
  ~VolumeManager();

  // Validates `request` and attaches it. INVALID_ARGUMENT for a bad
  // request; RESOURCE_EXHAUSTED past kMaxVolumes; otherwise the engine's
  // errors (UNAVAILABLE, NOT_FOUND, FAILED_PRECONDITION, ...).
  absl::StatusOr<v1::Volume> Attach(const v1::AttachRequest& request);
  // NOT_FOUND if no volume matches.
  absl::Status Detach(const v1::DetachRequest& request);
  std::vector<v1::Volume> List();
  absl::StatusOr<v1::GetFeaturesResponse> GetFeatures();
  // Detaches everything (shutdown).
  void DetachAll(bool force);

 private:
  // The control device, opened on first use (so a daemon started before
  // ublk_drv is loaded recovers once it is).
  absl::StatusOr<ublk::ControlDevice*> Control() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static v1::Volume Describe(const engine::Device& device);

  const std::string control_path_;
  absl::Mutex mu_;
  std::optional<ublk::ControlDevice> control_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, std::unique_ptr<engine::Device>> volumes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_VOLUME_MANAGER_H_
