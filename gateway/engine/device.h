// One attached volume: an NBD export served as /dev/ublkbN by one queue
// worker thread per ublk hardware queue.
#ifndef UBLKGW_ENGINE_DEVICE_H_
#define UBLKGW_ENGINE_DEVICE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "engine/data_path.h"
#include "engine/export_connection.h"
#include "engine/queue_worker.h"
#include "engine/stats.h"
#include "engine/ublk_driver.h"
#include "nbd/handshake.h"
#include "nbd/uri.h"
#include "ublk/control_device.h"

namespace ublkgw::engine {

// How long a graceful detach waits for requests in flight (a server that
// stopped answering) before it fails them with EIO.
inline constexpr absl::Duration kGracefulStopTimeout = absl::Seconds(30);

// Teardown order: workers stop (STOP_DEV aborts their fetches), threads are
// joined, /dev/ublkcN is closed, then DEL_DEV. The kernel is reached only
// through a UblkDriver (the real one from `control_path`, or a test's).
//
//
// Each device has a ublk control device of its own (opened from
// `control_path`), so nothing it waits for (a STOP_DEV that drains the
// requests in flight, a START_DEV whose partition scan reads from the
// server) holds up the daemon's other volumes.
// Threads: Detach, Leave and Resize may be called from any thread and are
// serialised per device; Stats and Health from any thread while the device
// is attached (not concurrently with Detach or Leave).
// Helpers of Device's files: the driver's ublk features (0 when it cannot
// say), and the real driver of `control_path`.
uint64_t KernelFeatures(UblkDriver& driver);
absl::StatusOr<std::unique_ptr<UblkDriver>> OpenDriver(const std::string& control_path);

class Device {
 public:
  // Connects and negotiates (one connection per queue; several queues only
  // when the server sets CAN_MULTI_CONN, else one, with a warning), then
  // adds, parameterises and starts the ublk device. Errors leave no device
  // behind: INVALID_ARGUMENT (URI, queues, depth, an export no block device
  // can present), UNAVAILABLE (server unreachable), NOT_FOUND (no such
  // export), FAILED_PRECONDITION (no ublk driver; zero copy asked for on a
  // kernel without it), ...
  // The kernel half of an attach, for an export ConnectExport connected
  // (and, through the new device's partition scan, the server).
  static absl::StatusOr<std::unique_ptr<Device>> Create(const std::string& control_path,
                                                        const AttachOptions& options,
                                                        ConnectedExport connected);
  // The same through `driver` (a test's fake).
  static absl::StatusOr<std::unique_ptr<Device>> Create(std::unique_ptr<UblkDriver> driver,
                                                        const AttachOptions& options,
                                                        ConnectedExport connected);
  // Takes over /dev/ublkb<options.device_id>, left by a daemon that exited
  // or crashed (a device made with user recovery, now quiesced), with the
  // connections `connected` (one per queue the device has): checks that the
  // export still serves what the device presents (size, block size, the
  // commands it may send), then START_USER_RECOVERY, fresh queues, and
  // END_USER_RECOVERY, which lets the held requests through. The device
  // keeps its data path (its flags decide it). UNAVAILABLE while the old
  // daemon still holds the device (retry); FAILED_PRECONDITION when the
  // export no longer fits; the device stays, waiting, on any error.
  static absl::StatusOr<std::unique_ptr<Device>> Adopt(const std::string& control_path,
                                                       const AttachOptions& options,
                                                       ConnectedExport connected);
  static absl::StatusOr<std::unique_ptr<Device>> Adopt(std::unique_ptr<UblkDriver> driver,
                                                       const AttachOptions& options,
                                                       ConnectedExport connected);
  ~Device();

  // Stops and deletes the device. Graceful: requests in flight finish
  // (kGracefulStopTimeout at most, then they fail). Forced: they fail with
  // EIO at once (a dead server cannot hold it up). Bounded even when the
  // kernel refuses STOP_DEV: the queues are told to exit then.
  absl::Status Detach(bool force);
  // Leaves the device for the next daemon (Adopt): the queues stop without
  // STOP_DEV, once the requests they sent have their replies (5 s at most,
  // QueueWorker::kLeaveGrace); the rest are issued to the next daemon, and
  // new ones wait for it. FAILED_PRECONDITION for a device made without
  // user recovery (Detach it instead).
  absl::Status Leave();
  // Starts Leave's stop of the queues without waiting, so several devices
  // drain their requests in flight at once.
  void BeginLeave();
  // Whether the device can outlive this daemon (Leave, Adopt).
  bool recoverable() const { return recoverable_; }

  uint32_t id() const { return id_; }
  std::string block_path() const;
  uint16_t queues() const { return static_cast<uint16_t>(workers_.size()); }
  const nbd::ExportInfo& export_info() const { return info_; }
  const std::string& note() const { return note_; }  // e.g. why one queue
  Remedy note_remedy() const { return note_remedy_; }  // what the operator could change
  const std::string& uri() const { return uri_; }    // canonical
  uint16_t depth() const { return depth_; }
  bool read_only() const { return read_only_; }
  // The data path chosen at attach, and why.
  const DataPathPlan& data_path() const { return plan_; }
  // The size the device presents (the export's, unless resized).
  uint64_t size() const { return size_.load(std::memory_order_relaxed); }

  // Statistics over all queues. Safe to call while the device serves I/O
  // (not concurrently with Detach).
  StatsSnapshot Stats() const;
  // The worst of the queues' connections (kUp < kReconnecting <
  // kFailingIo) and, unless all are up, which queue lost its connection
  // and why.
  struct LinkHealth {
    Link link = Link::kUp;
    std::string problem;
  };
  LinkHealth Health() const;

  // Changes the device's capacity to `size_bytes`, or to the export's
  // current size when 0, with UBLK_U_CMD_UPDATE_SIZE. The device can shrink
  // and grow back, but not past the size its NBD connections negotiated
  // (servers hold a connection to it): FAILED_PRECONDITION then, and when
  // the kernel lacks UPDATE_SIZE or the export changed its flags;
  // INVALID_ARGUMENT for a size that is not a multiple of the block size
  // or is beyond the export's end.
  absl::Status Resize(uint64_t size_bytes);

 private:
  explicit Device(std::unique_ptr<UblkDriver> driver) : driver_(std::move(driver)) {}
  // Stops workers and deletes the ublk device; used by Detach and by a
  // failed Attach (`started`: whether START_DEV succeeded). A graceful stop
  // that takes longer than kGracefulStopTimeout becomes a forced one.
  absl::Status Teardown(bool force, bool started);
  // Opens /dev/ublkcN and starts one worker per connection of `connected`,
  // and waits until each has its FETCH_REQs in the kernel.
  absl::Status StartWorkers(const AttachOptions& options, ConnectedExport& connected,
                            const DataPathPlan& plan, const nbd::ExportInfo& info,
                            const DeviceShape& shape);
  // The workers leave at once (their rings close) and /dev/ublkcN is closed.
  void StopWorkers();
  // Waits for the queue threads (told to stop) and closes the device.
  void JoinWorkers();

  std::unique_ptr<UblkDriver> driver_;  // this device's own control device and queues
  uint32_t id_ = 0;
  absl::Mutex op_mu_;  // serialises Detach, Leave and Resize
  nbd::ExportInfo info_;
  std::atomic<uint64_t> size_{0};
  std::string note_;
  Remedy note_remedy_ = Remedy::kNone;
  std::string uri_;
  uint16_t depth_ = 0;
  bool read_only_ = false;
  DataPathPlan plan_;
  std::vector<std::unique_ptr<QueueWorker>> workers_;
  std::vector<std::thread> threads_;
  bool attached_ = false;
  bool recoverable_ = false;
};

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_DEVICE_H_
