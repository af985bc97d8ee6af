#include "engine/device.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "engine/request_mapping.h"
#include "glog/logging.h"
#include "nbd/stream.h"
#include "nbd/wire.h"
#include "ublk/io_queue.h"

namespace ublkgw::engine {

namespace {

// Every connection of a device must see the same export.
absl::Status SameExport(const nbd::ExportInfo& a, const nbd::ExportInfo& b) {
  if (a.size != b.size || a.flags != b.flags || a.mode != b.mode) {
    return absl::FailedPreconditionError(
        "the server described the export differently on a second connection");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<UniqueFd, nbd::ExportInfo>> ConnectOne(const nbd::Uri& uri,
                                                                 absl::Duration timeout) {
  auto fd = nbd::Connect(uri, timeout);
  if (!fd.ok()) return fd.status();
  nbd::Stream stream(*std::move(fd), timeout);
  nbd::HandshakeOptions options;
  options.export_name = uri.export_name;
  auto info = nbd::Negotiate(stream, options);
  if (!info.ok()) return info.status();
  return std::pair{stream.Release(), *std::move(info)};
}

}  // namespace

std::string Device::block_path() const { return ublk::BlockDevicePath(id_); }

absl::StatusOr<std::unique_ptr<Device>> Device::Attach(ublk::ControlDevice& ctrl,
                                                       const AttachOptions& options) {
  auto uri = nbd::ParseUri(options.uri);
  if (!uri.ok()) return uri.status();
  if (options.queues < 1 || options.queues > kMaxQueues) {
    return absl::InvalidArgumentError(
        absl::StrCat("queues must be 1 to ", kMaxQueues, ", not ", options.queues));
  }
  if (options.depth < 1 || options.depth > kMaxDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("depth must be 1 to ", kMaxDepth, ", not ", options.depth));
  }

  // The first connection tells what the export is.
  auto first = ConnectOne(*uri, options.connect_timeout);
  if (!first.ok()) return first.status();
  nbd::ExportInfo info = first->second;
  std::vector<UniqueFd> sockets;
  sockets.push_back(std::move(first->first));
  uint16_t queues = options.queues;
  std::string note;
  if (queues > 1 && !info.can(nbd::kFlagCanMultiConn)) {
    note = absl::StrCat("the server does not set CAN_MULTI_CONN: using 1 queue, not ", queues);
    LOG(WARNING) << uri->ToString() << ": " << note;
    queues = 1;
  }
  // The kernel rounds the buffer size down to whole pages.
  const uint32_t page = static_cast<uint32_t>(sysconf(_SC_PAGESIZE));
  const uint32_t max_io = std::max(page, std::min(kMaxIoBytes, info.max_payload) / page * page);
  auto params = ParamsForExport(info, max_io, options.read_only);
  if (!params.ok()) return params.status();
  for (uint16_t q = 1; q < queues; ++q) {
    auto more = ConnectOne(*uri, options.connect_timeout);
    if (!more.ok()) return more.status();
    if (absl::Status s = SameExport(info, more->second); !s.ok()) return s;
    sockets.push_back(std::move(more->first));
  }

  ublk::ublksrv_ctrl_dev_info dev{};
  dev.nr_hw_queues = queues;
  dev.queue_depth = options.depth;
  dev.max_io_buf_bytes = max_io;
  dev.dev_id = ~0U;
  dev.ublksrv_pid = getpid();
  dev.flags = ublk::kFCmdIoctlEncode;
  auto added = ctrl.AddDev(dev);
  if (!added.ok()) return added.status();

  std::unique_ptr<Device> device(new Device(ctrl, added->dev_id));
  device->info_ = info;
  device->note_ = note;
  device->uri_ = uri->ToString();
  device->depth_ = options.depth;
  device->read_only_ = options.read_only || info.read_only();
  auto fail = [&](absl::Status why) -> absl::Status {
    if (absl::Status s = device->Teardown(/*force=*/true, /*started=*/false); !s.ok()) {
      LOG(ERROR) << "cleaning up ublk device " << device->id_ << ": " << s;
    }
    return why;
  };
  if (absl::Status s = ctrl.SetParams(device->id_, *params); !s.ok()) return fail(s);
  auto char_fd = ublk::OpenCharDevice(device->id_, absl::Seconds(10));
  if (!char_fd.ok()) return fail(char_fd.status());
  device->char_fd_ = *std::move(char_fd);

  const uint32_t generation = 1;
  for (uint16_t q = 0; q < queues; ++q) {
    QueueConfig config{q, options.depth, max_io, device->char_fd_.get()};
    device->workers_.push_back(
        std::make_unique<QueueWorker>(config, info, std::move(sockets[q]), generation));
  }
  for (auto& worker : device->workers_) {
    device->threads_.emplace_back([w = worker.get(), id = device->id_] {
      absl::Status s = w->Run();
      if (!s.ok()) LOG(ERROR) << "ublk device " << id << ": queue worker: " << s;
    });
  }
  // START_DEV waits for every queue's FETCH_REQs: send it only once each
  // worker has them in the kernel, or it would wait forever for a queue
  // that failed to start.
  for (auto& worker : device->workers_) {
    if (absl::Status s = worker->WaitReady(absl::Seconds(30)); !s.ok()) return fail(s);
  }
  // It returns once the disk is added (its partition scan is served by the
  // workers).
  if (absl::Status s = ctrl.StartDev(device->id_, getpid()); !s.ok()) return fail(s);
  device->attached_ = true;
  LOG(INFO) << "attached " << uri->ToString() << " as " << device->block_path() << " ("
            << info.size << " bytes, " << queues << " queue(s) of depth " << options.depth
            << ", copy data path)";
  return device;
}

absl::Status Device::Teardown(bool force, bool started) {
  absl::Status status;
  if (!started) {
    // Never started: no STOP_DEV to wait for; the workers leave at once and
    // closing their rings cancels their FETCH_REQs.
    for (auto& worker : workers_) worker->ExitNow();
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
  }
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  workers_.clear();
  char_fd_.Reset();  // DEL_DEV waits until /dev/ublkcN is closed
  absl::Status deleted = ctrl_.DelDev(id_);
  return status.ok() ? deleted : status;
}

absl::Status Device::Detach(bool force) {
  if (!attached_) return absl::OkStatus();
  attached_ = false;
  absl::Status s = Teardown(force, /*started=*/true);
  LOG(INFO) << "detached " << block_path() << (force ? " (forced)" : "") << ": " << s;
  return s;
}

uint64_t Device::completed() const {
  uint64_t n = 0;
  for (const auto& w : workers_) n += w->completed();
  return n;
}

uint64_t Device::failed() const {
  uint64_t n = 0;
  for (const auto& w : workers_) n += w->failed();
  return n;
}

Device::~Device() {
  if (attached_) (void)Detach(/*force=*/true);
}

}  // namespace ublkgw::engine
