// What a request asks of the volume manager, checked before anything is
// touched: the volume it names, and the attach options an AttachRequest
// (or a recorded one) becomes. Pure, apart from MayOutlive's random mark.
#ifndef UBLKGW_CONTROL_VOLUME_REQUEST_H_
#define UBLKGW_CONTROL_VOLUME_REQUEST_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "control/manager_options.h"
#include "engine/export_connection.h"
#include "engine/reconnect.h"
#include "ublkgw/v1/ublkgw.pb.h"

namespace ublkgw::control {

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
// NOT_FOUND naming `ref` and where to look.
absl::Status VolumeNotFound(const VolumeRef& ref);

// The attach options `request` asks for: INVALID_ARGUMENT naming what is
// wrong (no URI or one that does not parse, queues, depth, data path, a
// timeout past a day). Checks no host or kernel: a bad request is the
// caller's mistake on any host.
absl::StatusOr<engine::AttachOptions> ValidateAttachRequest(const v1::AttachRequest& request);
// The daemon's reconnect policy `policy` with what `request` asks for its
// volume.
engine::ReconnectPolicy PolicyFor(const v1::AttachRequest& request,
                                  engine::ReconnectPolicy policy);
// ValidateAttachRequest, with the daemon's data-path tuning and the
// volume's reconnect policy (PolicyFor) from `daemon`.
absl::StatusOr<engine::AttachOptions> AttachOptionsFor(const v1::AttachRequest& request,
                                                       const ManagerOptions& daemon);

// Lets a device made for a recorded volume outlive this daemon, marked
// `cookie` (0: a fresh random mark); without a record (`recording` false)
// says why not instead. Thread-safe.
void MayOutlive(bool recording, uint64_t cookie, engine::AttachOptions& options);

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_VOLUME_REQUEST_H_
