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

// Each operation kind and its field in v1::VolumeStats, in the API's order.
struct OpField {
  engine::OpKind kind;
  const v1::OpStats& (v1::VolumeStats::*get)() const;
  v1::OpStats* (v1::VolumeStats::*mutable_get)();
};
inline constexpr OpField kOpFields[] = {
    {engine::OpKind::kRead, &v1::VolumeStats::read, &v1::VolumeStats::mutable_read},
    {engine::OpKind::kWrite, &v1::VolumeStats::write, &v1::VolumeStats::mutable_write},
    {engine::OpKind::kFlush, &v1::VolumeStats::flush, &v1::VolumeStats::mutable_flush},
    {engine::OpKind::kDiscard, &v1::VolumeStats::discard, &v1::VolumeStats::mutable_discard},
    {engine::OpKind::kWriteZeroes, &v1::VolumeStats::write_zeroes,
     &v1::VolumeStats::mutable_write_zeroes},
};

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_STATS_PROTO_H_
