// A volume as the API lists it (v1::Volume): a recorded one still being
// restored, from its record and how restoring goes; an attached one, from
// its device. Free functions, so they can be tested without a manager.
#ifndef UBLKGW_CONTROL_VOLUME_VIEW_H_
#define UBLKGW_CONTROL_VOLUME_VIEW_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "engine/device.h"
#include "engine/reconnect.h"
#include "engine/stats.h"
#include "ublkgw/v1/ublkgw.pb.h"

namespace ublkgw::control {

// How restoring a recorded volume goes, as far as its listing shows.
struct RestoreProgress {
  bool left_in_kernel = false;  // its device waits in the kernel to be taken over
  std::string error;            // why the last attempt failed; empty: none failed
  absl::Time next_try;          // InfiniteFuture: never (an invalid record)
};

// A duration in whole milliseconds, as the API gives timeouts.
uint32_t Ms(absl::Duration d);

// /dev/ublkb`id`, restoring (HEALTH_RESTORING): what `asked` asked for (its
// URI canonical where it parses; data path as asked, as auto is decided at
// attach), the reconnect policy it gets from `daemon`, and in the health
// detail how restoring goes and the wait until the next attempt from `now`.
v1::Volume DescribeRestoring(uint32_t id, const v1::AttachRequest& asked,
                             const RestoreProgress& progress,
                             const engine::ReconnectPolicy& daemon, absl::Time now);
// The attached `device`, asked for as `asked`, with its counters from
// `stats` (nullptr: read from the device) and its link's health. Any
// thread, while `device` is attached (Device::Stats and Health).
v1::Volume DescribeAttached(const engine::Device& device, const v1::AttachRequest& asked,
                            const engine::ReconnectPolicy& daemon,
                            const engine::StatsSnapshot* stats = nullptr);

// DescribeAttached with the device's statistics (VolumeStats), from one
// reading of its counters.
v1::GetVolumeResponse DescribeWithStats(const engine::Device& device,
                                        const v1::AttachRequest& asked,
                                        const engine::ReconnectPolicy& daemon);

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_VOLUME_VIEW_H_
