#include "control/volume_view.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "control/remedy_words.h"
#include "control/stats_proto.h"
#include "control/volume_request.h"
#include "nbd/handshake.h"
#include "nbd/uri.h"
#include "ublk/io_queue.h"

namespace ublkgw::control {

namespace {

void SetPolicy(const v1::AttachRequest& asked, const engine::ReconnectPolicy& daemon,
               v1::Volume& v) {
  const engine::ReconnectPolicy policy = PolicyFor(asked, daemon);
  v.set_io_timeout_ms(Ms(policy.io_timeout));
  v.set_reconnect_deadline_ms(Ms(policy.reconnect_deadline));
}

void SetHealth(const engine::Device::LinkHealth& health, v1::Volume& v) {
  switch (health.link) {
    case engine::Link::kUp:
      v.set_health(v1::HEALTH_OK);
      break;
    case engine::Link::kReconnecting:
      v.set_health(v1::HEALTH_RECONNECTING);
      v.set_health_detail(absl::StrCat(health.problem, "; its I/O waits for the connection"));
      break;
    case engine::Link::kFailingIo:
      v.set_health(v1::HEALTH_DISCONNECTED);
      v.set_health_detail(absl::StrCat(health.problem, "; its I/O fails with EIO"));
      break;
  }
}

}  // namespace

uint32_t Ms(absl::Duration d) { return static_cast<uint32_t>(absl::ToInt64Milliseconds(d)); }

v1::Volume DescribeRestoring(uint32_t id, const v1::AttachRequest& asked,
                             const RestoreProgress& progress,
                             const engine::ReconnectPolicy& daemon, absl::Time now) {
  v1::Volume v;
  v.set_device_id(id);
  v.set_device_path(ublk::BlockDevicePath(id));
  auto canonical = nbd::ParseUri(asked.uri());
  v.set_uri(canonical.ok() ? canonical->ToString() : asked.uri());
  v.set_queues(asked.queues() == 0 ? 1 : asked.queues());
  v.set_depth(asked.depth() == 0 ? 128 : asked.depth());
  v.set_data_path(asked.data_path());  // as asked: auto is decided at attach
  v.set_read_only(asked.read_only());
  SetPolicy(asked, daemon, v);
  v.set_health(v1::HEALTH_RESTORING);
  std::string detail = progress.left_in_kernel
                           ? "its device waits in the kernel (its I/O too) for this daemon to "
                             "take it over"
                           : "recorded, not attached yet";
  if (!progress.error.empty()) absl::StrAppend(&detail, ": ", progress.error);
  if (progress.next_try != absl::InfiniteFuture()) {
    const absl::Duration wait = std::max(progress.next_try - now, absl::ZeroDuration());
    absl::StrAppend(&detail, " (next attempt in ",
                    absl::FormatDuration(absl::Trunc(wait, absl::Seconds(1))), ")");
  }
  v.set_health_detail(detail);
  return v;
}

v1::Volume DescribeAttached(const engine::Device& device, const v1::AttachRequest& asked,
                            const engine::ReconnectPolicy& daemon,
                            const engine::StatsSnapshot* stats) {
  v1::Volume v;
  v.set_device_id(device.id());
  v.set_device_path(device.block_path());
  v.set_uri(device.uri());
  v.set_queues(device.queues());
  v.set_depth(device.depth());
  const engine::DataPathPlan& path = device.data_path();
  v.set_data_path(!path.zero_copy ? v1::DATA_PATH_COPY
                  : path.registration == engine::BufferRegistration::kFused
                      ? v1::DATA_PATH_FUSED
                      : v1::DATA_PATH_ZERO_COPY);
  v.set_data_path_detail(Explain(device.data_path().detail, device.data_path().remedy));
  v.set_read_only(device.read_only());
  v.set_size_bytes(device.size());
  SetPolicy(asked, daemon, v);
  for (const auto& name : nbd::TransmissionFlagNames(device.export_info().flags)) {
    v.add_transmission_flags(name);
  }
  v.set_note(Explain(device.note(), device.note_remedy()));
  const engine::StatsSnapshot snapshot = stats ? *stats : device.Stats();
  uint64_t ops = 0, errors = 0;
  for (const auto& op : snapshot.op) {
    ops += op.ops;
    errors += op.errors;
  }
  // Counters are read one by one while the queues run: clamp.
  v.set_completed_requests(ops > errors ? ops - errors : 0);
  v.set_failed_requests(errors);
  SetHealth(device.Health(), v);
  return v;
}

v1::GetVolumeResponse DescribeWithStats(const engine::Device& device,
                                        const v1::AttachRequest& asked,
                                        const engine::ReconnectPolicy& daemon) {
  const engine::StatsSnapshot stats = device.Stats();
  v1::GetVolumeResponse r;
  *r.mutable_volume() = DescribeAttached(device, asked, daemon, &stats);
  *r.mutable_stats() = StatsToProto(stats);
  r.mutable_stats()->set_device_id(device.id());
  r.mutable_stats()->set_data_path(r.volume().data_path());
  r.mutable_stats()->set_health(r.volume().health());
  return r;
}

}  // namespace ublkgw::control
