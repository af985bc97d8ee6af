#include "control/stats_proto.h"

#include "absl/time/clock.h"

namespace ublkgw::control {

v1::LatencyHistogram HistogramToProto(const engine::HistogramSnapshot& h) {
  v1::LatencyHistogram out;
  for (int i = 0; i < engine::LatencyBuckets::kCount; ++i) {
    if (h.counts[i] == 0) continue;
    auto* b = out.add_buckets();
    b->set_le_ns(engine::LatencyBuckets::UpperBoundNs(i));
    b->set_count(h.counts[i]);
  }
  out.set_count(h.Count());
  out.set_sum_ns(h.sum_ns);
  out.set_p50_ns(h.QuantileNs(0.50));
  out.set_p90_ns(h.QuantileNs(0.90));
  out.set_p99_ns(h.QuantileNs(0.99));
  out.set_p999_ns(h.QuantileNs(0.999));
  return out;
}

namespace {

v1::OpStats* MutableOp(v1::VolumeStats& stats, engine::OpKind kind) {
  switch (kind) {
    case engine::OpKind::kRead:
      return stats.mutable_read();
    case engine::OpKind::kWrite:
      return stats.mutable_write();
    case engine::OpKind::kFlush:
      return stats.mutable_flush();
    case engine::OpKind::kDiscard:
      return stats.mutable_discard();
    case engine::OpKind::kWriteZeroes:
      return stats.mutable_write_zeroes();
  }
  return stats.mutable_read();
}

}  // namespace

const v1::OpStats& OpOf(const v1::VolumeStats& stats, engine::OpKind kind) {
  switch (kind) {
    case engine::OpKind::kRead:
      return stats.read();
    case engine::OpKind::kWrite:
      return stats.write();
    case engine::OpKind::kFlush:
      return stats.flush();
    case engine::OpKind::kDiscard:
      return stats.discard();
    case engine::OpKind::kWriteZeroes:
      return stats.write_zeroes();
  }
  return stats.read();
}

v1::VolumeStats StatsToProto(const engine::StatsSnapshot& s) {
  v1::VolumeStats out;
  out.set_unix_time_ns(static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())));
  for (int k = 0; k < engine::kOpKinds; ++k) {
    const auto kind = static_cast<engine::OpKind>(k);
    const engine::OpSnapshot& op = s.of(kind);
    v1::OpStats* o = MutableOp(out, kind);
    o->set_ops(op.ops);
    o->set_bytes(op.bytes);
    o->set_errors(op.errors);
    *o->mutable_latency() = HistogramToProto(op.latency);
  }
  out.set_in_flight(s.in_flight);
  out.set_reconnects(s.reconnects);
  return out;
}

}  // namespace ublkgw::control
