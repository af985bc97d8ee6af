// Connecting to an NBD export for a device: its connections (one per
// queue, several only with CAN_MULTI_CONN), what they negotiated, and the
// device parameters that follow. Talks only to the server; needs no kernel.
#ifndef UBLKGW_ENGINE_EXPORT_CONNECTION_H_
#define UBLKGW_ENGINE_EXPORT_CONNECTION_H_

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "engine/data_path.h"
#include "engine/reconnect.h"
#include "nbd/handshake.h"
#include "nbd/uri.h"
#include "ublk/uapi.h"

namespace ublkgw::engine {

struct AttachOptions {
  std::string uri;
  uint16_t queues = 1;
  uint16_t depth = 128;
  bool read_only = false;
  absl::Duration connect_timeout = absl::Seconds(10);
  // The N of /dev/ublkbN to ask for: this one (a restored volume keeps its
  // name); if it is unset or taken, the lowest free one not in
  // `reserved_ids`.
  std::optional<uint32_t> device_id;
  std::set<uint32_t> reserved_ids;  // ids recorded for volumes being restored
  // Copy, zero copy, or (auto) the best this kernel really supports.
  DataPathMode data_path = DataPathMode::kAuto;
  DataPathTuning tuning;
  ReconnectPolicy reconnect;  // what each queue does when its connection fails
  // Make a device that outlives this daemon (user recovery, where the
  // driver has it), marked with `device_cookie` (kept by the kernel in
  // ublksrv_flags) so the next daemon knows it for its own. Only for a
  // volume that is recorded: nothing else could take it over. Otherwise
  // `why_not_outlive` says why, in the volume's note.
  bool outlive_daemon = false;
  uint64_t device_cookie = 0;
  std::string why_not_outlive;
};

// An export connected and negotiated, not yet a device: one socket per
// queue, and what they agreed on. Needs no kernel.
struct ConnectedExport {
  std::string uri;  // canonical
  nbd::ExportInfo info;
  std::vector<UniqueFd> sockets;
  std::string note;  // e.g. why fewer queues than asked
  uint32_t max_io = 0;
  ublk::ublk_params params{};
};

inline constexpr uint16_t kMaxQueues = 64;
inline constexpr uint16_t kMaxDepth = 1024;
// The largest request a device takes (less if the server's maximum
// payload is smaller): 1 MiB, so a 1 MiB read or write is one NBD request.
// The copy path maps depth * this per queue; pages are touched only as
// requests that large come.
inline constexpr uint32_t kMaxIoBytes = 1024 * 1024;
// Connects and negotiates `options.uri` for a device: one connection per
// queue (several only when the server sets CAN_MULTI_CONN, else one, with a
// note), each seeing the same export. INVALID_ARGUMENT (URI, queues,
// depth, an export no block device can present), UNAVAILABLE (server
// unreachable), NOT_FOUND (no such export), ... CANCELLED as soon as
// `cancel_fd` (an eventfd, say; -1: none) is readable, with no connection
// left open.
absl::StatusOr<ConnectedExport> ConnectExport(const AttachOptions& options, int cancel_fd = -1);

// One connection to `uri`, past the handshake, and what it negotiated.
// `cancel_fd`: see nbd::Connect (-1: none).
absl::StatusOr<std::pair<UniqueFd, nbd::ExportInfo>> ConnectAndNegotiate(const nbd::Uri& uri,
                                                                         absl::Duration timeout,
                                                                         int cancel_fd = -1);

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_EXPORT_CONNECTION_H_
