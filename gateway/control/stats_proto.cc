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

v1::VolumeStats StatsToProto(const engine::StatsSnapshot& s) {
  v1::VolumeStats out;
  out.set_unix_time_ns(static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())));
  for (const OpField& field : kOpFields) {
    const engine::OpSnapshot& op = s.of(field.kind);
    v1::OpStats* o = (out.*field.mutable_get)();
    o->set_ops(op.ops);
    o->set_bytes(op.bytes);
    o->set_errors(op.errors);
    *o->mutable_latency() = HistogramToProto(op.latency);
  }
  out.set_in_flight(s.in_flight);
  out.set_reconnects(s.reconnects);
  out.set_socket_recvs(s.recvs);
  out.set_ring_enters(s.ring_enters);
  out.set_acks_pushed(s.acks_pushed);
  return out;
}

}  // namespace ublkgw::control
