// What a queue does when its NBD connection fails: the device stays, its
// requests wait, and the queue connects again (engine/queue_worker.h), with
// these rules.
#ifndef UBLKGW_ENGINE_RECONNECT_H_
#define UBLKGW_ENGINE_RECONNECT_H_

#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "nbd/handshake.h"
#include "ublk/uapi.h"

namespace ublkgw::engine {

struct ReconnectPolicy {
  // A request with no reply this long after it was sent fails the
  // connection (a stalled server). Zero: wait for ever.
  absl::Duration io_timeout = absl::Seconds(30);
  // How long requests wait for a new connection before they (and new ones)
  // fail with EIO. Zero: at once, without reconnecting first.
  absl::Duration reconnect_deadline = absl::Seconds(120);
  // After the deadline: keep trying (the next connection serves I/O
  // again), or stop for good.
  bool keep_reconnecting = true;
  // Waits between attempts: doubling from `backoff_min` up to `backoff_max`,
  // each drawn between half and all of that ("equal jitter").
  absl::Duration backoff_min = absl::Milliseconds(100);
  absl::Duration backoff_max = absl::Seconds(10);
  // A request sent this many times without a reply fails with EIO (a
  // request that brings the server down each time cannot stall the rest).
  int max_attempts = 5;
};

// The wait before attempt `attempt` (1 for the first retry); `unit` is a
// random draw in [0, 1).
absl::Duration BackoffDelay(const ReconnectPolicy& policy, int attempt, double unit);

// What a new connection must still serve.
struct DeviceShape {
  uint64_t size = 0;          // bytes the device presents
  bool read_only = false;
  uint16_t queues = 1;
  uint32_t max_io_bytes = 0;  // the largest request
};

// Whether a device attached to `attached` may go on with a new connection
// that negotiated `now`: same header mode; at least the device's size; not
// read-only where the device writes; every command the device may send
// (FLUSH, FUA, TRIM, WRITE_ZEROES, and several connections for several
// queues) still offered; block sizes its requests still fit.
// FAILED_PRECONDITION naming what changed.
absl::Status CheckReconnectedExport(const nbd::ExportInfo& attached, const nbd::ExportInfo& now,
                                    const DeviceShape& device);

// The shape of a device given `params` (SET_PARAMS) and `queues`: its
// largest request is max_sectors, which may be below its buffers' size (a
// server whose maximum payload is under a page).
DeviceShape ShapeOfParams(const ublk::ublk_params& params, uint16_t queues);

// What a device already in the kernel needs of an export, read from its
// parameters (GET_PARAMS) and info (GET_DEV_INFO), for a daemon that takes
// over a device its predecessor left: the size and block size it presents,
// and the commands its attributes let the kernel send (FLUSH with a
// volatile cache, FUA, TRIM with discard, WRITE_ZEROES). `needed.mode` is
// left for the caller to set (a new daemon may negotiate either format).
struct DeviceNeeds {
  nbd::ExportInfo needed;
  DeviceShape shape;
};
DeviceNeeds NeedsOfDevice(const ublk::ublksrv_ctrl_dev_info& dev, const ublk::ublk_params& params);

// Opens a new connection for a queue: connects, negotiates and checks the
// export (CheckReconnectedExport) for a device now `device_size` bytes
// large. Called from a queue's reconnect thread; CANCELLED as soon as
// `cancel_fd` is readable (the queue stops reconnecting).
using Connector = std::function<absl::StatusOr<UniqueFd>(uint64_t device_size, int cancel_fd)>;

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_RECONNECT_H_
