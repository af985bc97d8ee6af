#include "engine/device.h"

#include <pthread.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "engine/request_mapping.h"
#include "glog/logging.h"
#include "nbd/blocking_client.h"
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
absl::StatusOr<ublk::ublksrv_ctrl_dev_info> AddWithId(ublk::ControlDevice& ctrl,
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

// The data path for a device whose connections are `socket`, decided
// before ADD_DEV (zero copy changes the device's flags), from the ublk
// features `have` and what the fixed-buffer probe proves.
absl::StatusOr<DataPathPlan> PlanDataPath(DataPathMode mode, uint64_t have,
                                          const DataPathTuning& tuning, int socket) {
  if (mode == DataPathMode::kCopy) return ChooseDataPath(DataPathMode::kCopy, 0, {});
  auto family = SocketFamily(socket);
  if (!family.ok()) return family.status();
  auto probe = CachedProbe(*family);
  if (!probe.ok()) {
    LOG(WARNING) << "the fixed-buffer probe could not run: " << probe.status();
    probe = FixedBufferSupport{};  // nothing proven: zero copy is off
  }
  return ChooseDataPath(mode, have, WithoutOps(*probe, tuning.disabled_ops),
                        tuning.send_zc_min_bytes, PeerIsLocal(socket));
}

// The ublk device flags a data path needs.
uint64_t DeviceFlags(const DataPathPlan& plan) {
  if (!plan.zero_copy) return 0;
  return plan.registration == BufferRegistration::kAuto ? ublk::kFAutoBufReg
                                                        : ublk::kFSupportZeroCopy;
}

// The kernel's ublk features (none before GET_FEATURES, 6.4).
uint64_t KernelFeatures(ublk::ControlDevice& ctrl) {
  auto features = ctrl.GetFeatures();
  return features.ok() ? *features : 0;
}

// The data path for a device that already has its flags: a restarted
// daemon serves it the way its buffers are registered.
absl::StatusOr<DataPathPlan> PlanForDevice(ublk::ControlDevice& ctrl, const AttachOptions& options,
                                           uint64_t device_flags, int socket) {
  constexpr uint64_t kZeroCopyFlags = ublk::kFAutoBufReg | ublk::kFSupportZeroCopy;
  const uint64_t has = device_flags & kZeroCopyFlags;
  if (has == 0) return ChooseDataPath(DataPathMode::kCopy, 0, {});
  auto features = ctrl.GetFeatures();
  uint64_t offer = features.ok() ? *features : 0;
  if ((has & ublk::kFAutoBufReg) == 0) offer &= ~ublk::kFAutoBufReg;
  DataPathTuning tuning = options.tuning;
  tuning.disabled_ublk_features = 0;  // the device's flags decide
  auto plan = PlanDataPath(DataPathMode::kZeroCopy, offer, tuning, socket);
  if (!plan.ok() || DeviceFlags(*plan) != has) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the device was made for zero copy (flags 0x", absl::Hex(has),
        ") and this daemon cannot serve it that way",
        plan.ok() ? "" : absl::StrCat(": ", plan.status().message()),
        "; start ublkgwd without --disable-socket-ops, or detach the volume"));
  }
  return plan;
}

// The recovery flags a device gets where the driver has them: a device
// that outlives its daemon, with requests in flight at its exit issued
// again to the next one.
constexpr uint64_t kRecoveryFlags = ublk::kFUserRecovery | ublk::kFUserRecoveryReissue;

}  // namespace

std::string Device::block_path() const { return ublk::BlockDevicePath(id_); }

absl::StatusOr<std::unique_ptr<Device>> Device::Create(const std::string& control_path,
                                                       const AttachOptions& options,
                                                       ConnectedExport connected) {
  auto opened = ublk::ControlDevice::Open(control_path);
  if (!opened.ok()) return opened.status();
  std::unique_ptr<Device> device(new Device(*std::move(opened)));
  ublk::ControlDevice& ctrl = device->ctrl_;
  const nbd::ExportInfo& info = connected.info;
  const uint16_t queues = static_cast<uint16_t>(connected.sockets.size());
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
    // A driver that takes the flag but does not keep it (ADD_DEV echoes
    // what it kept) has no zero copy after all.
    (void)ctrl.DelDev(added->dev_id);
    return absl::FailedPreconditionError(absl::StrCat(
        "the ublk driver did not keep the zero-copy flags (asked for 0x", absl::Hex(DeviceFlags(*plan)),
        ", kept 0x", absl::Hex(added->flags), "). Use --data-path copy"));
  }

  device->id_ = added->dev_id;
  device->recoverable_ = outlive && (added->flags & kRecoveryFlags) == kRecoveryFlags &&
                         added->ublksrv_flags == options.device_cookie;
  device->note_ = connected.note;
  if (!device->recoverable_) {
    std::string why = "the device cannot outlive this ublkgwd (if it stops or crashes, the "
                      "device goes away): ";
    if (!options.outlive_daemon) {
      why += options.why_not_outlive;
    } else if ((kernel & kRecoveryFlags) != kRecoveryFlags) {
      why += "this kernel's ublk driver lacks user recovery (UBLK_F_USER_RECOVERY_REISSUE)";
    } else if ((offered & kRecoveryFlags) != kRecoveryFlags) {
      why += "user recovery is ruled out (ublkgwd --disable-ublk-features user-recovery)";
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

absl::StatusOr<std::unique_ptr<Device>> Device::Adopt(const std::string& control_path,
                                                      const AttachOptions& options,
                                                      ConnectedExport connected) {
  if (!options.device_id.has_value()) return absl::InvalidArgumentError("no device to adopt");
  const uint32_t id = *options.device_id;
  auto opened = ublk::ControlDevice::Open(control_path);
  if (!opened.ok()) return opened.status();
  std::unique_ptr<Device> device(new Device(*std::move(opened)));
  device->id_ = id;
  ublk::ControlDevice& ctrl = device->ctrl_;
  auto dev = ctrl.GetDevInfo(id);
  if (!dev.ok()) return dev.status();
  if (options.device_cookie == 0 || dev->ublksrv_flags != options.device_cookie) {
    return absl::FailedPreconditionError(
        absl::StrCat(ublk::BlockDevicePath(id), " is not the device made for this volume"));
  }
  auto params = ctrl.GetParams(id);
  if (!params.ok()) return params.status();
  DeviceNeeds needs = NeedsOfDevice(*dev, *params);
  const uint16_t queues = dev->nr_hw_queues;
  if (connected.sockets.size() != queues) {
    return absl::FailedPreconditionError(absl::StrCat(
        ublk::BlockDevicePath(id), " has ", queues, " queues but the server gave ",
        connected.sockets.size(), " connection(s) (does it still set CAN_MULTI_CONN?)"));
  }
  needs.needed.mode = connected.info.mode;
  if (absl::Status s = CheckReconnectedExport(needs.needed, connected.info, needs.shape); !s.ok()) {
    return s;
  }
  auto plan = PlanForDevice(ctrl, options, dev->flags, connected.sockets[0].get());
  if (!plan.ok()) return plan.status();
  // Fails while the old daemon still holds /dev/ublkcN (it is exiting).
  if (absl::Status s = ctrl.StartUserRecovery(id); !s.ok()) return s;

  device->recoverable_ = true;
  device->note_ = connected.note;
  AttachOptions shaped = options;
  shaped.depth = dev->queue_depth;
  shaped.read_only = needs.shape.read_only;
  connected.max_io = dev->max_io_buf_bytes;
  const nbd::ExportInfo info = connected.info;
  if (absl::Status s = device->StartWorkers(shaped, connected, *plan, info, needs.shape); !s.ok()) {
    device->StopWorkers();  // the device waits, quiesced, for the next try
    return s;
  }
  // Held and reissued requests go to the new queues from here on.
  if (absl::Status s = ctrl.EndUserRecovery(id, getpid()); !s.ok()) {
    device->StopWorkers();
    return s;
  }
  device->size_ = needs.shape.size;
  device->attached_ = true;
  LOG(INFO) << "took over " << device->block_path() << " from the previous ublkgwd: "
            << connected.uri << " (" << needs.shape.size << " bytes, " << queues
            << " queue(s) of depth " << dev->queue_depth << "); data path: " << plan->detail;
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
  auto char_fd = ublk::OpenCharDevice(id_, absl::Seconds(10));
  if (!char_fd.ok()) return char_fd.status();
  char_fd_ = *std::move(char_fd);

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
        config, std::make_unique<KernelUblkQueue>(char_fd_.get(), q_id, options.depth), info,
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
  char_fd_.Reset();
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
    status = ctrl_.StopDev(id_);
    stopped.Notify();
    watchdog.join();
    if (!status.ok()) {
      // The kernel did not stop the device, so it will not abort the
      // queues' fetches: tell them to exit (they fail what they hold), so
      // the joins below end; DEL_DEV then stops the device itself.
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
  char_fd_.Reset();  // DEL_DEV waits until /dev/ublkcN is closed
  absl::Status deleted = ctrl_.DelDev(id_);
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

absl::Status Device::Resize(uint64_t size_bytes) {
  absl::MutexLock lock(&op_mu_);
  if (!attached_) return absl::FailedPreconditionError(absl::StrCat(block_path(), " is detached"));
  auto features = ctrl_.GetFeatures();
  if (!features.ok()) return features.status();
  if ((*features & ublk::kFUpdateSize) == 0) {
    return absl::FailedPreconditionError(
        "this kernel's ublk driver cannot resize a live device (it lacks UBLK_F_UPDATE_SIZE, "
        "added in Linux 6.14): detach and attach again to see a new size");
  }
  // Within what the connections negotiated, the server need not be asked
  // (a server that takes one client at a time could not answer anyway).
  nbd::ExportInfo current = info_;
  if (size_bytes == 0 || size_bytes > info_.size) {
    auto uri = nbd::ParseUri(uri_);
    if (!uri.ok()) return uri.status();
    nbd::ClientOptions probe;
    probe.timeout = absl::Seconds(10);
    auto client = nbd::BlockingClient::Connect(*uri, probe);
    if (!client.ok()) return client.status();
    current = client->info();
    (void)client->Disconnect();
    if (current.flags != info_.flags || current.mode != info_.mode) {
      return absl::FailedPreconditionError(
          "the server now describes the export with other flags; detach and attach again");
    }
  }
  const uint64_t target = size_bytes == 0 ? current.size : size_bytes;
  const uint64_t block = std::max<uint64_t>(512, info_.min_block);
  if (target == 0 || target % block != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the size must be a positive multiple of the block size (", block,
                     " bytes), not ", target));
  }
  if (target > current.size) {
    return absl::InvalidArgumentError(
        absl::StrCat("the export is ", current.size, " bytes; the device cannot be larger (",
                     target, "): grow the export on the server first"));
  }
  // NBD fixes an export's size for the life of a connection: the server
  // refuses requests past the size it told this device's connections.
  if (target > info_.size) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the export is now ", current.size, " bytes, but this device's NBD connections were "
        "opened when it was ", info_.size, " and the server holds each connection to that size; "
        "growing past it needs new connections: detach and attach again"));
  }
  // Growing: the workers accept the new range before the kernel sends it.
  // Shrinking: the kernel stops sending it before the workers refuse it.
  if (target > size()) {
    for (auto& w : workers_) w->SetSizeLimit(target);
  }
  if (absl::Status s = ctrl_.UpdateSize(id_, target >> 9); !s.ok()) {
    for (auto& w : workers_) w->SetSizeLimit(size());
    return s;
  }
  for (auto& w : workers_) w->SetSizeLimit(target);
  LOG(INFO) << block_path() << ": resized from " << size() << " to " << target << " bytes";
  size_ = target;
  return absl::OkStatus();
}

Device::~Device() {
  if (attached_) (void)Detach(/*force=*/true);
}

}  // namespace ublkgw::engine
