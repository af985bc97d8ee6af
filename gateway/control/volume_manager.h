// The daemon's volumes: every attached device, the recorded ones still
// being restored, and the record of them in the state directory.
//
// Locking: `ctrl_mu_` serialises changes to the table's membership (a
// volume added, detached, renamed) and to the record (the state file), and
// the steps that must see the kernel and the table agree: a detach that
// removes the device a previous daemon left, and a restore attempt's step
// from connecting to making its device (BeginMaking). `mu_` guards the
// table of volumes and is held only briefly. Neither is held across
// network I/O, a device's creation or takeover, or a drain: each device has
// a control device of its own (engine::Device), so what one volume waits
// for (connecting to its server, its START_DEV or END_USER_RECOVERY, the
// drain of a graceful detach, a resize that asks the server) holds up no
// other volume's attach, detach, list or resize, nor its restore (up to
// Restorer::kMaxAttempts at once). Restoring takes the locks only for its
// brief steps (RestoreHost); a detach while it is under way is safe (see
// Detach). Under ctrl_mu_ run only the state file's write and a few
// commands on the shared control device, each bounded by its timeout
// (UblkHost). Order: ctrl_mu_ before mu_.
#ifndef UBLKGW_CONTROL_VOLUME_MANAGER_H_
#define UBLKGW_CONTROL_VOLUME_MANAGER_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "control/manager_options.h"
#include "control/on_stop.h"
#include "control/restorer.h"
#include "control/state_store.h"
#include "control/ublk_host.h"
#include "control/volume_request.h"
#include "control/volume_view.h"
#include "engine/device.h"
#include "ublkgw/v1/state.pb.h"
#include "ublkgw/v1/ublkgw.pb.h"

namespace ublkgw::control {

inline constexpr size_t kMaxVolumes = 256;

// Thread-safe.
class VolumeManager final : private RestoreHost {
 public:
  // Devices are made by the kernel's ublk driver at options.control_path.
  explicit VolumeManager(ManagerOptions options);
  // Devices are made by `driver` (a test's fake); options.control_path is
  // not used.
  VolumeManager(ManagerOptions options, std::unique_ptr<UblkHost> driver);
  // Stops restoring and detaches every device (forced); records are kept.
  ~VolumeManager();

  // Validates `request`, attaches it and records it. INVALID_ARGUMENT for
  // a bad request; RESOURCE_EXHAUSTED past kMaxVolumes; otherwise the
  // engine's errors (UNAVAILABLE, NOT_FOUND, FAILED_PRECONDITION, ...).
  absl::StatusOr<v1::Volume> Attach(const v1::AttachRequest& request);
  // Detaches the volume (or stops restoring it) and forgets its record.
  // NOT_FOUND if no volume matches. A volume not attached yet: the device a
  // previous daemon left for it is removed first (if that fails, the volume
  // stays: UNAVAILABLE); while its device is being made, the attempt ends
  // what it made; while its left device is being taken over, UNAVAILABLE
  // (try again once that attempt has ended, within its bounds).
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
  // Re-attaches the recorded volumes in the background (Restorer): one
  // that fails is retried with backoff until it attaches or an operator
  // detaches it; a device the previous daemon left is taken over.
  void StartRestorer();
  // Detaches or leaves every device (the daemon is stopping); records are
  // kept, so the next daemon attaches them again, or takes them over.
  // Waits first for the restore attempts under way (Restorer::Stop).
  void Shutdown(OnStop how);

 private:
  // Where a recorded volume's restoring is: a restore attempt's claim on
  // its entry (RestoreHost). Why the races this opens are safe:
  // - Two attempts of one volume: ClaimForRestore takes only a kIdle entry
  //   (under mu_), and the claim ends only in BeginMaking or FinishRestore.
  // - A detach meanwhile. kConnecting counts as idle: a left device is
  //   removed and the entry erased, all under ctrl_mu_; BeginMaking, under
  //   ctrl_mu_ too, then finds the entry gone and nothing is made.
  //   kCreating: the entry is erased, and FinishRestore (matching by
  //   serial, as the id may be reused) gives the device made back to the
  //   restorer, which detaches it. kAdopting: UNAVAILABLE until it ends.
  // - Shutdown: BeginMaking refuses once stopping_ is set; an attempt past
  //   it puts its device in the table before Shutdown, which waits for
  //   every attempt, takes the table.
  enum class RestoreStep {
    kIdle,        // no attempt under way
    kConnecting,  // claimed: asking the kernel, connecting to the server
    kCreating,    // making a new device (BeginMaking)
    kAdopting,    // taking over the device a previous daemon left
  };
  struct Entry {
    uint64_t serial = 0;                     // unique to this entry, never reused
    v1::AttachmentRecord record;             // what the operator asked for
    std::shared_ptr<engine::Device> device;  // null while restoring
    bool recorded = false;                   // saved in the state file as it is
    RestoreStep step = RestoreStep::kIdle;   // while restoring
    RestoreProgress restore;                 // while restoring
    absl::Duration backoff;                  // the wait after the next failed attempt
  };
  using Table = std::map<uint32_t, Entry>;

  Table::iterator Find(const VolumeRef& ref) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The claimed entry, if it is still in the table.
  Table::iterator FindClaimed(const RestoreClaim& claim) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Volume Describe(uint32_t id, const Entry& entry) const;
  absl::Status SaveRecords() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ctrl_mu_) ABSL_LOCKS_EXCLUDED(mu_);
  // The kernel half of an attach, for an export connected without locks,
  // at a free id no restoring volume waits for.
  absl::StatusOr<std::unique_ptr<engine::Device>> CreateDevice(
      engine::AttachOptions options, engine::ConnectedExport connected) ABSL_LOCKS_EXCLUDED(mu_);
  // Puts a restored `device` in the claimed entry `it` (made with `cookie`).
  void Install(Table::iterator it, std::unique_ptr<engine::Device> device, uint64_t cookie)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(ctrl_mu_, mu_);

  // RestoreHost, for restorer_'s threads.
  Schedule RestoreSchedule(absl::Time now) override ABSL_LOCKS_EXCLUDED(mu_);
  std::optional<RestoreClaim> ClaimForRestore(uint32_t id) override ABSL_LOCKS_EXCLUDED(mu_);
  std::optional<std::set<uint32_t>> BeginMaking(const RestoreClaim& claim, bool adopting) override
      ABSL_LOCKS_EXCLUDED(ctrl_mu_, mu_);
  bool FinishRestore(const RestoreClaim& claim, RestoreResult& result) override
      ABSL_LOCKS_EXCLUDED(ctrl_mu_, mu_);

  const ManagerOptions options_;
  std::optional<StateStore> store_ ABSL_GUARDED_BY(ctrl_mu_);
  // Whether store_ is there (devices may outlive the daemon), for reading
  // without ctrl_mu_.
  std::atomic<bool> recording_;
  const std::unique_ptr<UblkHost> driver_;

  absl::Mutex ctrl_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  absl::Mutex mu_;
  Table volumes_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  size_t connecting_ ABSL_GUARDED_BY(mu_) = 0;  // attaches still connecting
  uint64_t last_serial_ ABSL_GUARDED_BY(mu_) = 0;

  // Last: its threads use the members above, and it is stopped first.
  Restorer restorer_;
};

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_VOLUME_MANAGER_H_
