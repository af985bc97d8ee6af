// The daemon's volumes: every attached device, the ublk control device
// they share, and the record of them in the state directory.
//
// Locking: `ctrl_mu_` serialises changes to the table and the record, and
// guards the shared control device (feature queries, devices a previous
// daemon left) and the state file; `mu_` guards the table of volumes and
// is held only briefly. Each device has a control device of its own
// (engine::Device), so what one volume waits for — connecting to its
// server, its START_DEV, the drain of a graceful detach, a resize that
// asks the server — holds neither lock, and no other volume waits behind
// it. (Restoring a recorded volume at start-up still holds ctrl_mu_.)
// Order: ctrl_mu_ before mu_.
#ifndef UBLKGW_CONTROL_VOLUME_MANAGER_H_
#define UBLKGW_CONTROL_VOLUME_MANAGER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/random/random.h"
#include "control/left_device.h"
#include "control/state_store.h"
#include "engine/data_path.h"
#include "engine/device.h"
#include "ublk/control_device.h"
#include "ublkgw/v1/state.pb.h"
#include "ublkgw/v1/ublkgw.pb.h"

namespace ublkgw::control {

inline constexpr size_t kMaxVolumes = 256;

// A volume named by a request: its id N, or its path /dev/ublkbN.
struct VolumeRef {
  std::optional<uint32_t> id;
  std::string path;
};
// The `target` oneof of a request; INVALID_ARGUMENT when it is unset.
template <typename Request>
absl::StatusOr<VolumeRef> RefOf(const Request& r) {
  if (r.has_device_id()) return VolumeRef{r.device_id(), ""};
  if (r.has_device_path() && !r.device_path().empty()) return VolumeRef{std::nullopt, r.device_path()};
  return absl::InvalidArgumentError("name the volume: a device id or a path like /dev/ublkb0");
}

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

// What stopping the daemon does with its devices.
enum class OnStop {
  kDetach,       // graceful detaches sharing one grace period
  kForceDetach,  // requests in flight fail at once
  kKeep,         // each device waits in the kernel for the next daemon
                 // (those made without user recovery are detached)
};

// Thread-safe.
class VolumeManager {
 public:
  explicit VolumeManager(ManagerOptions options);
  // Stops restoring and detaches every device (forced); records are kept.
  ~VolumeManager();

  // Validates `request`, attaches it and records it. INVALID_ARGUMENT for
  // a bad request; RESOURCE_EXHAUSTED past kMaxVolumes; otherwise the
  // engine's errors (UNAVAILABLE, NOT_FOUND, FAILED_PRECONDITION, ...).
  absl::StatusOr<v1::Volume> Attach(const v1::AttachRequest& request);
  // Detaches the volume (or stops restoring it) and forgets its record.
  // NOT_FOUND if no volume matches.
  absl::Status Detach(const v1::DetachRequest& request);
  std::vector<v1::Volume> List();
  absl::StatusOr<v1::GetVolumeResponse> GetVolume(const VolumeRef& ref);
  // Every volume with its statistics (for metrics).
  std::vector<v1::GetVolumeResponse> ListWithStats();
  absl::StatusOr<v1::Volume> Resize(const v1::ResizeRequest& request);
  absl::StatusOr<v1::GetFeaturesResponse> GetFeatures();
  // Fills what the manager knows of `info`: kernel, ublk, data paths,
  // state directory, volumes.
  void DescribeDaemon(v1::DaemonInfo& info);

  // Loads the state record: every recorded volume is listed as RESTORING.
  // Call it before serving requests (an attach must not rewrite the record
  // before it is read). A record that cannot be parsed is moved aside
  // (DATA_LOSS); one from a newer daemon is left alone and nothing is
  // recorded from then on (FAILED_PRECONDITION). A recorded volume whose
  // request is invalid stays listed with the reason and is never tried.
  absl::Status LoadRecords();
  // Re-attaches the recorded volumes in the background: one that fails
  // (its server is down, say) is retried with backoff until it attaches or
  // an operator detaches it. A volume whose device the previous daemon
  // left in the kernel is taken over (engine::Device::Adopt), so its
  // /dev/ublkbN and whatever is mounted on it never go away.
  void StartRestorer();
  // Detaches or leaves every device (the daemon is stopping); records are
  // kept, so the next daemon attaches them again, or takes them over.
  // Graceful detaches share one grace period (engine::kGracefulStopTimeout);
  // later ones are forced.
  void Shutdown(OnStop how);

 private:
  struct Entry {
    v1::AttachmentRecord record;             // what the operator asked for
    std::shared_ptr<engine::Device> device;  // null while restoring
    std::string restore_error;               // the last failed attempt
    bool left_in_kernel = false;             // its device waits to be taken over
    bool recorded = false;                   // saved in the state file as it is
    absl::Time next_try;
    absl::Duration backoff;
  };
  using Table = std::map<uint32_t, Entry>;

  // The control device, opened on first use (so a daemon started before
  // ublk_drv is loaded works once it is).
  absl::StatusOr<ublk::ControlDevice*> Control() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ctrl_mu_);
  Table::iterator Find(const VolumeRef& ref) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static absl::Status NotFound(const VolumeRef& ref);
  // `stats`: the device's statistics when the caller already took them.
  v1::Volume Describe(uint32_t id, const Entry& entry,
                      const engine::StatsSnapshot* stats = nullptr) const;
  // engine::ProbeFixedBuffers on TCP, run once per process.
  static std::string FixedBufferProbe();
  absl::Status SaveRecords() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ctrl_mu_);
  // Whether the control device opens (no ublk driver: FAILED_PRECONDITION).
  absl::Status CheckControl() ABSL_LOCKS_EXCLUDED(ctrl_mu_);
  // The kernel half of an attach, for an export connected without locks:
  // asks for `id` (else a free id no restoring volume waits for).
  absl::StatusOr<std::unique_ptr<engine::Device>> CreateDevice(
      engine::AttachOptions options, std::optional<uint32_t> id,
      absl::StatusOr<engine::ConnectedExport> connected) ABSL_LOCKS_EXCLUDED(mu_);
  // Asks the kernel about the device a previous daemon may have left for
  // `record` (JudgeLeftDevice).
  LeftDevice AskLeftDevice(const v1::AttachmentRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(ctrl_mu_);
  // Lets a device made for a recorded volume outlive this daemon, marked
  // `cookie` (0: a fresh mark); says why not when nothing is recorded.
  void MayOutlive(engine::AttachOptions& options, uint64_t cookie = 0);
  // Takes over the device `id` the previous daemon left, for an export
  // connected without locks.
  absl::StatusOr<std::unique_ptr<engine::Device>> AdoptDevice(
      engine::AttachOptions options, uint32_t id,
      absl::StatusOr<engine::ConnectedExport> connected) ABSL_EXCLUSIVE_LOCKS_REQUIRED(ctrl_mu_);
  // Stops and deletes the device a previous daemon left waiting for
  // `record` (detached before it was taken over); UNAVAILABLE while that
  // daemon still lets go of it, or the kernel cannot be asked.
  absl::Status RemoveLeftDevice(const v1::AttachmentRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(ctrl_mu_);
  void RestoreLoop();
  // One attempt at the due restoring volumes; returns the next due time.
  absl::Time RestoreDue();
  void RestoreOne(uint32_t id);

  const ManagerOptions options_;
  std::optional<StateStore> store_;

  absl::Mutex ctrl_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::optional<ublk::ControlDevice> control_ ABSL_GUARDED_BY(ctrl_mu_);

  absl::Mutex mu_;
  Table volumes_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  size_t connecting_ ABSL_GUARDED_BY(mu_) = 0;  // attaches still connecting
  std::thread restorer_;
  absl::Mutex cookie_mu_;
  absl::BitGen cookie_random_ ABSL_GUARDED_BY(cookie_mu_);
};

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_VOLUME_MANAGER_H_
