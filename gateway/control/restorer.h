// Re-attaching the recorded volumes after a restart, in the background. A
// volume that fails (its server is down, say) is retried with backoff until
// it attaches or an operator detaches it. A device the previous daemon left
// in the kernel is taken over (engine::Device::Adopt), so its /dev/ublkbN
// and whatever is mounted on it never go away.
#ifndef UBLKGW_CONTROL_RESTORER_H_
#define UBLKGW_CONTROL_RESTORER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "control/manager_options.h"
#include "control/ublk_host.h"
#include "control/volume_view.h"
#include "engine/device.h"
#include "ublkgw/v1/state.pb.h"

namespace ublkgw::control {

// One attempt's hold on a recorded volume (RestoreHost::ClaimForRestore).
struct RestoreClaim {
  uint32_t id = 0;
  // The table entry's own number: the volume may be detached meanwhile and
  // its id given to another.
  uint64_t serial = 0;
  v1::AttachmentRecord record;
  absl::Duration backoff;  // the wait after this attempt, should it fail
};

// How an attempt ended (RestoreHost::FinishRestore).
struct RestoreResult {
  absl::StatusOr<std::unique_ptr<engine::Device>> device = absl::UnknownError("not tried");
  bool adopting = false;  // it took over, or was to take over, a device left in the kernel
  uint64_t cookie = 0;    // the mark the device was made with (AttachOptions::device_cookie)
  absl::Duration retry_in;      // after a failure: the wait before the next attempt
  absl::Duration next_backoff;  // and the one after that, should it fail too
};

// After a failed attempt whose wait was `backoff`: the wait before the next
// one, doubling up to `max`, or 5 s at most for a device that waits in the
// kernel (`adopting`), as it holds its applications' I/O.
struct Retry {
  absl::Duration wait;
  absl::Duration next_backoff;
};
Retry RetryAfter(absl::Duration backoff, bool adopting, absl::Duration max);

// A recorded volume to restore, and how its restoring starts.
struct RecordedVolume {
  v1::AttachmentRecord record;
  RestoreProgress progress;
};
// The volumes of a loaded record (read from `where`) to restore: due at
// `now`, or never, with the reason, when the recorded request is invalid
// (kept, so it is not lost, and shown). An id recorded twice keeps its
// first record; past `max` volumes the rest are left out (both logged).
std::vector<RecordedVolume> RecordedVolumes(const std::vector<v1::AttachmentRecord>& records,
                                            size_t max, const std::string& where,
                                            absl::Time now);

// The table the restorer restores into (VolumeManager). Every call is
// brief: it takes the table's locks (ctrl_mu_ at most for BeginMaking and
// FinishRestore, which wait behind another volume's brief step at worst)
// and never waits for a server or a device. Called from any of the
// restorer's threads.
class RestoreHost {
 public:
  struct Schedule {
    std::vector<uint32_t> due;                 // recorded volumes to try now
    absl::Time next = absl::InfiniteFuture();  // when the next one not due yet is
  };
  // Volumes neither attached nor claimed by an attempt; none while stopping.
  virtual Schedule RestoreSchedule(absl::Time now) = 0;
  // Claims volume `id` for one attempt: nullopt if it is gone, attached or
  // claimed already, or the daemon is stopping. The claim ends with
  // FinishRestore, or when BeginMaking refuses; meanwhile no other attempt
  // claims the volume.
  virtual std::optional<RestoreClaim> ClaimForRestore(uint32_t id) = 0;
  // The claimed volume's export is connected: may its device be made now
  // (`adopting`: taken over)? Returns the ids to leave alone (other volumes
  // being restored); nullopt when it was detached or the daemon is stopping,
  // and the claim has ended.
  virtual std::optional<std::set<uint32_t>> BeginMaking(const RestoreClaim& claim,
                                                        bool adopting) = 0;
  // Ends the claim. A device made joins the table (taken from `result`) and
  // the record is saved; a failure is shown and the volume is due again after
  // result.retry_in. False if the volume was detached meanwhile: a device in
  // `result` is then the caller's to end.
  virtual bool FinishRestore(const RestoreClaim& claim, RestoreResult& result) = 0;

 protected:
  ~RestoreHost() = default;
};

// A thread that wakes when a recorded volume is due and starts an attempt
// for it on a thread of its own, so a volume whose server or kernel steps
// are slow holds up no other (kMaxAttempts at most at once). An attempt
// connects and makes its device holding no lock of the table's.
// Threads: Start and Stop from the owner's; the loop and the attempts call
// the host and the driver. Teardown: Stop cancels the connects under way
// (through an eventfd every attempt's connections watch), joins the loop,
// then every attempt (each ends what it made that nobody wants).
class Restorer {
 public:
  static constexpr size_t kMaxAttempts = 16;

  // `host`, `driver` and `options` must outlive the restorer. `recording`:
  // the daemon records its volumes, so their devices may outlive it.
  Restorer(RestoreHost& host, UblkHost& driver, const ManagerOptions& options, bool recording);
  ~Restorer() { Stop(); }

  // Starts restoring (once; nothing after Stop).
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Stops restoring and waits for the attempts under way. An attempt still
  // connecting stops at once (CANCELLED, its volume left as it was); one
  // making its device is bounded by the kernel's command timeouts, never by
  // another volume. Any thread but the restorer's own.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_, stop_mu_);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  // Claims the due volumes and starts their attempts; returns when the next
  // volume is due.
  absl::Time StartDue() ABSL_LOCKS_EXCLUDED(mu_);
  // Joins the attempts that have ended.
  void JoinFinished() ABSL_LOCKS_EXCLUDED(mu_);
  // One attempt, on its own thread (`key` in attempts_).
  void Run(uint64_t key, const RestoreClaim& claim) ABSL_LOCKS_EXCLUDED(mu_);
  // Connects and makes or takes over the device. nullopt: the claim ended
  // in BeginMaking (detached, or stopping).
  std::optional<RestoreResult> Attempt(const RestoreClaim& claim);
  // Hands `result` to the table, and ends a device nobody wants any more.
  void Finish(const RestoreClaim& claim, RestoreResult result);

  RestoreHost& host_;
  UblkHost& driver_;
  const ManagerOptions& options_;
  const bool recording_;
  // Readable once Stop has begun: ends every attempt's connecting (-1 when
  // no eventfd could be had; connects are then bounded by their timeout).
  UniqueFd cancel_;

  absl::Mutex stop_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // serialises Stop
  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread loop_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::thread> attempts_ ABSL_GUARDED_BY(mu_);  // under way, by key
  uint64_t next_key_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint64_t> finished_keys_ ABSL_GUARDED_BY(mu_);  // ended, not joined yet
  uint64_t finished_ ABSL_GUARDED_BY(mu_) = 0;  // attempts ended ever: wakes the loop
};

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_RESTORER_H_
