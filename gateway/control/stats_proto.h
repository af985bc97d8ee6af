// The engine's statistics as the API's messages.
#ifndef UBLKGW_CONTROL_STATS_PROTO_H_
#define UBLKGW_CONTROL_STATS_PROTO_H_

#include <cstdint>

#include "engine/stats.h"
#include "ublkgw/v1/ublkgw.pb.h"

namespace ublkgw::control {

v1::LatencyHistogram HistogramToProto(const engine::HistogramSnapshot& h);
// Counters and histograms of `s`; the caller sets device, health and path.
v1::VolumeStats StatsToProto(const engine::StatsSnapshot& s);
const v1::OpStats& OpOf(const v1::VolumeStats& stats, engine::OpKind kind);

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_STATS_PROTO_H_
