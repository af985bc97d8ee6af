#include "engine/reconnect.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "nbd/wire.h"

namespace ublkgw::engine {

absl::Duration BackoffDelay(const ReconnectPolicy& policy, int attempt, double unit) {
  absl::Duration cap = policy.backoff_min;
  for (int i = 1; i < attempt && cap < policy.backoff_max; ++i) cap *= 2;
  cap = std::min(cap, policy.backoff_max);
  unit = std::clamp(unit, 0.0, 1.0);
  return cap / 2 + (cap / 2) * unit;
}

absl::Status CheckReconnectedExport(const nbd::ExportInfo& attached, const nbd::ExportInfo& now,
                                    const DeviceShape& device) {
  auto changed = [](absl::string_view what) {
    return absl::FailedPreconditionError(
        absl::StrCat("the export changed incompatibly since attach: ", what,
                     "; fix the server, or detach and attach again"));
  };
  if (now.mode != attached.mode) return changed("it negotiated another reply format");
  if (now.size < device.size) {
    return changed(absl::StrCat("it is ", now.size, " bytes, the device ", device.size));
  }
  if (!device.read_only && now.read_only()) return changed("it is read-only now");
  struct Needed {
    uint16_t flag;
    const char* name;
  };
  for (const Needed& n : {Needed{nbd::kFlagSendFlush, "FLUSH"}, Needed{nbd::kFlagSendFua, "FUA"},
                          Needed{nbd::kFlagSendTrim, "TRIM"},
                          Needed{nbd::kFlagSendWriteZeroes, "WRITE_ZEROES"}}) {
    if (attached.can(n.flag) && !now.can(n.flag)) {
      return changed(absl::StrCat("it no longer offers ", n.name));
    }
  }
  if (device.queues > 1 && !now.can(nbd::kFlagCanMultiConn)) {
    return changed("it no longer allows several connections (CAN_MULTI_CONN)");
  }
  if (now.min_block > attached.min_block) {
    return changed(absl::StrCat("its minimum block grew from ", attached.min_block, " to ",
                                now.min_block));
  }
  if (now.max_payload < device.max_io_bytes) {
    return changed(absl::StrCat("its maximum payload shrank to ", now.max_payload,
                                " bytes, below the device's requests of up to ",
                                device.max_io_bytes));
  }
  return absl::OkStatus();
}

DeviceNeeds NeedsOfDevice(const ublk::ublksrv_ctrl_dev_info& dev, const ublk::ublk_params& params) {
  DeviceNeeds n;
  const ublk::ublk_param_basic& b = params.basic;
  n.needed.size = b.dev_sectors << 9;
  n.needed.min_block = 1u << b.logical_bs_shift;
  if (b.attrs & ublk::kAttrVolatileCache) n.needed.flags |= nbd::kFlagSendFlush;
  if (b.attrs & ublk::kAttrFua) n.needed.flags |= nbd::kFlagSendFua;
  if (params.types & ublk::kParamTypeDiscard) {
    if (params.discard.max_discard_sectors > 0) n.needed.flags |= nbd::kFlagSendTrim;
    if (params.discard.max_write_zeroes_sectors > 0) n.needed.flags |= nbd::kFlagSendWriteZeroes;
  }
  n.shape = ShapeOfParams(params, dev.nr_hw_queues);
  return n;
}

DeviceShape ShapeOfParams(const ublk::ublk_params& params, uint16_t queues) {
  const ublk::ublk_param_basic& b = params.basic;
  DeviceShape shape;
  shape.size = b.dev_sectors << 9;
  shape.read_only = (b.attrs & ublk::kAttrReadOnly) != 0;
  shape.queues = queues;
  shape.max_io_bytes = b.max_sectors << 9;
  return shape;
}

}  // namespace ublkgw::engine
