#include "engine/device.h"

#include <pthread.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "engine/request_mapping.h"
#include "glog/logging.h"
#include "nbd/wire.h"
#include "ublk/io_queue.h"
#include "ublk/params_check.h"

namespace ublkgw::engine {

namespace {

// The parameters a device was given, for an error the kernel gave.
std::string DescribeParams(const ublk::ublk_params& p) {
  std::string out = absl::StrCat(
      "logical block 2^", p.basic.logical_bs_shift, ", physical block 2^", p.basic.physical_bs_shift,
      ", max_sectors ", p.basic.max_sectors, ", ", p.basic.dev_sectors, " sectors, attrs 0x",
      absl::Hex(p.basic.attrs));
  if (p.types & ublk::kParamTypeDiscard) {
    absl::StrAppend(&out, "; discard granularity ", p.discard.discard_granularity,
                    ", max_discard_sectors ", p.discard.max_discard_sectors,
                    ", max_write_zeroes_sectors ", p.discard.max_write_zeroes_sectors);
  }
  return out;
}

// ADD_DEV with the id `options` asks for; ids others hold (EEXIST) are
// skipped.
absl::StatusOr<ublk::ublksrv_ctrl_dev_info> AddWithId(UblkDriver& ctrl,
                                                      ublk::ublksrv_ctrl_dev_info dev,
                                                      const AttachOptions& options) {
  if (options.device_id.has_value()) {
    dev.dev_id = *options.device_id;
    auto added = ctrl.AddDev(dev);
    if (!absl::IsAlreadyExists(added.status())) return added;
    LOG(WARNING) << "/dev/ublkb" << *options.device_id << " is taken; choosing another id";
  }
  // The lowest free id, like the kernel would choose, but never one a
  // recorded volume waits to get back (the kernel's own choice could be).
  constexpr uint32_t kMaxIds = 1 << 16;
  for (uint32_t id = 0; id < kMaxIds; ++id) {
    if (options.reserved_ids.contains(id)) continue;
    dev.dev_id = id;
    auto added = ctrl.AddDev(dev);
    if (!absl::IsAlreadyExists(added.status())) return added;
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("every ublk device id below ", kMaxIds, " is taken"));
}

// The recovery flags a device gets where the driver has them: a device
// that outlives its daemon, with requests in flight at its exit issued
// again to the next one.
constexpr uint64_t kRecoveryFlags = ublk::kFUserRecovery | ublk::kFUserRecoveryReissue;

}  // namespace

std::string Device::block_path() const { return ublk::BlockDevicePath(id_); }

uint64_t KernelFeatures(UblkDriver& driver) {
  auto features = driver.GetFeatures();
  return features.ok() ? *features : 0;
}

absl::StatusOr<std::unique_ptr<UblkDriver>> OpenDriver(const std::string& control_path) {
  auto opened = ublk::ControlDevice::Open(control_path);
  if (!opened.ok()) return opened.status();
  return KernelUblkDriver(*std::move(opened));
}

absl::StatusOr<std::unique_ptr<Device>> Device::Create(const std::string& control_path,
                                                       const AttachOptions& options,
                                                       ConnectedExport connected) {
  auto driver = OpenDriver(control_path);
  if (!driver.ok()) return driver.status();
  return Create(*std::move(driver), options, std::move(connected));
}

absl::StatusOr<std::unique_ptr<Device>> Device::Create(std::unique_ptr<UblkDriver> driver,
                                                       const AttachOptions& options,
                                                       ConnectedExport connected) {
  std::unique_ptr<Device> device(new Device(std::move(driver)));
  UblkDriver& ctrl = *device->driver_;
  const nbd::ExportInfo& info = connected.info;
  uint16_t queues = static_cast<uint16_t>(connected.sockets.size());
  const uint32_t max_io = connected.max_io;
  const uint64_t kernel = KernelFeatures(ctrl);
  const uint64_t offered = kernel & ~options.tuning.disabled_ublk_features;
  auto plan = PlanDataPath(options.data_path, offered, options.tuning, connected.sockets[0].get());
  if (!plan.ok()) return plan.status();
  const bool outlive =
      options.outlive_daemon && (offered & kRecoveryFlags) == kRecoveryFlags;
  ublk::ublksrv_ctrl_dev_info dev{};
  dev.nr_hw_queues = queues;
  dev.queue_depth = options.depth;
  dev.max_io_buf_bytes = max_io;
  dev.ublksrv_pid = getpid();
  dev.flags = ublk::kFCmdIoctlEncode | DeviceFlags(*plan) | (outlive ? kRecoveryFlags : 0);
  dev.ublksrv_flags = options.device_cookie;
  auto added = AddWithId(ctrl, dev, options);
  if (!added.ok()) return added.status();
  if ((added->flags & DeviceFlags(*plan)) != DeviceFlags(*plan)) {
    // A driver that takes a flag but does not keep it (ADD_DEV echoes
    // what it kept) has no such data path after all.
    (void)ctrl.DelDev(added->dev_id);
    return WithRemedy(absl::FailedPreconditionError(absl::StrCat(
                          "the ublk driver did not keep the data path's flags (asked for 0x",
                          absl::Hex(DeviceFlags(*plan)), ", kept 0x", absl::Hex(added->flags),
                          ")")),
                      Remedy::kUseCopyDataPath);
  }

  device->id_ = added->dev_id;
  std::string queue_note;
  if (added->nr_hw_queues == 0 || added->nr_hw_queues > queues) {
    (void)ctrl.DelDev(added->dev_id);
    return absl::InternalError(absl::StrCat("the ublk driver made a device of ",
                                            added->nr_hw_queues, " queue(s) when ", queues,
                                            " were asked for"));
  }
  if (added->nr_hw_queues < queues) {
    // The driver gives a device at most one queue per CPU: serve the ones
    // it made (their connections are made; the rest are closed), and say so.
    const std::string why = absl::StrCat(
        "the kernel gave the device ", added->nr_hw_queues, " queue(s), not the ", queues,
        " asked for (the ublk driver allows one per CPU)");
    LOG(WARNING) << ublk::BlockDevicePath(added->dev_id) << ": " << why;
    queue_note = why;
    queues = added->nr_hw_queues;
    connected.sockets.resize(queues);
  }
  device->recoverable_ = outlive && (added->flags & kRecoveryFlags) == kRecoveryFlags &&
                         added->ublksrv_flags == options.device_cookie;
  device->note_ = connected.note;
  if (!queue_note.empty()) {
    device->note_ += device->note_.empty() ? queue_note : "; " + queue_note;
  }
  if (!device->recoverable_) {
    std::string why = "the device cannot outlive this ublkgwd (if it stops or crashes, the "
                      "device goes away): ";
    if (!options.outlive_daemon) {
      why += options.why_not_outlive;
    } else if ((kernel & kRecoveryFlags) != kRecoveryFlags) {
      why += "this kernel's ublk driver lacks user recovery (UBLK_F_USER_RECOVERY_REISSUE)";
    } else if ((offered & kRecoveryFlags) != kRecoveryFlags) {
      why += "user recovery is ruled out by the operator";
      device->note_remedy_ = Remedy::kAllowUserRecovery;
    } else {
      why += absl::StrCat("the driver did not keep user recovery (kept flags 0x",
                          absl::Hex(added->flags), ")");
    }
    LOG(WARNING) << ublk::BlockDevicePath(device->id_) << ": " << why;
    device->note_ += device->note_.empty() ? why : "; " + why;
  }
  auto fail = [&](absl::Status why) -> absl::Status {
    if (absl::Status s = device->Teardown(/*force=*/true, /*started=*/false); !s.ok()) {
      LOG(ERROR) << "cleaning up ublk device " << device->id_ << ": " << s;
    }
    return why;
  };
  const auto page = static_cast<uint32_t>(sysconf(_SC_PAGESIZE));
  if (absl::Status s = ublk::CheckParams(connected.params, max_io, page); !s.ok()) {
    return fail(absl::InternalError(absl::StrCat("ublkgw chose device parameters the kernel "
                                                 "refuses (a bug; please report it): ",
                                                 s.message())));
  }
  if (absl::Status s = ctrl.SetParams(device->id_, connected.params); !s.ok()) {
    return fail(absl::Status(
        s.code(), absl::StrCat(s.message(), " (the kernel refused the device's parameters: ",
                               DescribeParams(connected.params), ")")));
  }
  // The requests the device sends, not its buffers' size: what a new
  // connection must still take.
  const DeviceShape shape = ShapeOfParams(connected.params, queues);
  if (absl::Status s = device->StartWorkers(options, connected, *plan, info, shape); !s.ok()) {
    return fail(s);
  }
  // It returns once the disk is added (its partition scan is served by the
  // workers).
  if (absl::Status s = ctrl.StartDev(device->id_, getpid()); !s.ok()) return fail(s);
  device->attached_ = true;
  LOG(INFO) << "attached " << connected.uri << " as " << device->block_path() << " ("
            << info.size << " bytes, " << queues << " queue(s) of depth " << options.depth
            << "); data path: " << plan->detail;
  return device;
}

absl::Status Device::StartWorkers(const AttachOptions& options, ConnectedExport& connected,
                                  const DataPathPlan& plan, const nbd::ExportInfo& info,
                                  const DeviceShape& shape) {
  info_ = info;
  size_ = shape.size;
  uri_ = connected.uri;
  depth_ = options.depth;
  read_only_ = shape.read_only;
  plan_ = plan;
  if (absl::Status s = driver_->OpenQueues(id_); !s.ok()) return s;

  // Each queue reconnects on its own, to the same export, as long as it can
  // still serve this device.
  auto uri = nbd::ParseUri(connected.uri);
  if (!uri.ok()) return uri.status();
  Connector connector = [uri = *uri, timeout = options.connect_timeout, attached = info,
                         shape](uint64_t device_size, int cancel_fd) -> absl::StatusOr<UniqueFd> {
    auto c = ConnectAndNegotiate(uri, timeout, cancel_fd);
    if (!c.ok()) return c.status();
    DeviceShape now = shape;
    now.size = device_size;
    if (absl::Status s = CheckReconnectedExport(attached, c->second, now); !s.ok()) return s;
    return std::move(c->first);
  };
  for (size_t q = 0; q < connected.sockets.size(); ++q) {
    const auto q_id = static_cast<uint16_t>(q);
    QueueConfig config{q_id, options.depth, connected.max_io, plan, options.reconnect, connector};
    workers_.push_back(std::make_unique<QueueWorker>(
        config, driver_->MakeQueue(q_id, options.depth), info,
        std::move(connected.sockets[q])));
  }
  for (auto& worker : workers_) {
    const size_t q = threads_.size();
    threads_.emplace_back([w = worker.get(), id = id_, q] {
      // Named for top -H and perf: "ublkb3-q1" serves /dev/ublkb3's queue 1.
      const std::string name = absl::StrCat("ublkb", id, "-q", q).substr(0, 15);
      pthread_setname_np(pthread_self(), name.c_str());
      absl::Status s = w->Run();
      if (!s.ok()) LOG(ERROR) << "ublk device " << id << ": queue worker: " << s;
    });
  }
  // START_DEV (and END_USER_RECOVERY) wait for every queue's FETCH_REQs:
  // send them only once each worker has them in the kernel, or they would
  // wait forever for a queue that failed to start.
  for (auto& worker : workers_) {
    if (absl::Status s = worker->WaitReady(absl::Seconds(30)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

void Device::BeginLeave() {
  if (recoverable_) {
    for (auto& worker : workers_) worker->Leave();
  }
}

void Device::StopWorkers() {
  for (auto& worker : workers_) worker->ExitNow();
  JoinWorkers();
}

void Device::JoinWorkers() {
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  workers_.clear();  // their rings close, cancelling their ublk commands
  driver_->CloseQueues();
}

absl::Status Device::Leave() {
  absl::MutexLock lock(&op_mu_);
  if (!attached_) return absl::OkStatus();
  if (!recoverable_) {
    return absl::FailedPreconditionError(
        absl::StrCat(block_path(), " cannot outlive its daemon (no user recovery)"));
  }
  attached_ = false;
  // Requests in flight are answered first (for QueueWorker::kLeaveGrace at
  // most); the rest are issued again to the next daemon (REISSUE), and new
  // ones wait for it in the kernel.
  BeginLeave();
  JoinWorkers();
  LOG(INFO) << "left " << block_path() << " for the next ublkgwd (its I/O waits until then)";
  return absl::OkStatus();
}

absl::Status Device::Teardown(bool force, bool started) {
  absl::Status status;
  if (!started) {
    // Never started: no STOP_DEV to wait for; the workers leave at once and
    // closing their rings cancels their FETCH_REQs.
    StopWorkers();
  } else {
    if (force) {
      for (auto& worker : workers_) worker->Abort();
    }
    // STOP_DEV waits for requests in flight; a server that stopped
    // answering would hold it forever, so after a grace period they fail.
    absl::Notification stopped;
    std::thread watchdog([&] {
      if (!stopped.WaitForNotificationWithTimeout(kGracefulStopTimeout)) {
        LOG(WARNING) << "ublk device " << id_ << ": requests still in flight after "
                     << absl::FormatDuration(kGracefulStopTimeout) << "; failing them";
        for (auto& worker : workers_) worker->Abort();
      }
    });
    status = driver_->StopDev(id_);
    stopped.Notify();
    watchdog.join();
    if (!status.ok()) {
      // The kernel did not stop the device, so it will not abort the
      // queues' fetches: tell them to exit, so the joins below end (the
      // kernel fails the requests they held once /dev/ublkcN closes);
      // DEL_DEV then stops the device itself.
      LOG(ERROR) << "ublk device " << id_ << ": " << status << "; stopping its queues anyway";
      for (auto& worker : workers_) {
        worker->Abort();
        worker->ExitNow();
      }
    }
  }
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  workers_.clear();
  driver_->CloseQueues();  // DEL_DEV waits until /dev/ublkcN is closed
  absl::Status deleted = driver_->DelDev(id_);
  return status.ok() ? deleted : status;
}

absl::Status Device::Detach(bool force) {
  absl::MutexLock lock(&op_mu_);
  if (!attached_) return absl::OkStatus();
  attached_ = false;
  absl::Status s = Teardown(force, /*started=*/true);
  LOG(INFO) << "detached " << block_path() << (force ? " (forced)" : "") << ": " << s;
  return s;
}

StatsSnapshot Device::Stats() const {
  StatsSnapshot total;
  for (const auto& w : workers_) total += w->stats().Snapshot();
  return total;
}

Device::LinkHealth Device::Health() const {
  LinkHealth health;
  for (size_t q = 0; q < workers_.size(); ++q) {
    const Link link = workers_[q]->link();
    if (link == Link::kUp) continue;
    health.link = std::max(health.link, link);
    if (!health.problem.empty()) health.problem += "; ";
    absl::StrAppend(&health.problem, "queue ", q, ": ", workers_[q]->connection_error());
  }
  return health;
}

Device::~Device() {
  if (attached_) (void)Detach(/*force=*/true);
}

}  // namespace ublkgw::engine
