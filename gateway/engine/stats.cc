#include "engine/stats.h"

#include <bit>
#include <cmath>
#include <limits>

namespace ublkgw::engine {

std::string_view OpKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kRead:
      return "read";
    case OpKind::kWrite:
      return "write";
    case OpKind::kFlush:
      return "flush";
    case OpKind::kDiscard:
      return "discard";
    case OpKind::kWriteZeroes:
      return "write_zeroes";
  }
  return "unknown";
}

int LatencyBuckets::Index(uint64_t ns) {
  if (ns < (uint64_t{1} << kMinShift)) return 0;
  if (ns >= (uint64_t{1} << kMaxShift)) return kCount - 1;
  const int shift = std::bit_width(ns) - 1;  // kMinShift..kMaxShift-1
  const int sub = static_cast<int>((ns >> (shift - 2)) & (kSubBuckets - 1));
  return 1 + (shift - kMinShift) * kSubBuckets + sub;
}

uint64_t LatencyBuckets::UpperBoundNs(int index) {
  if (index <= 0) return (uint64_t{1} << kMinShift) - 1;
  if (index >= kCount - 1) return std::numeric_limits<uint64_t>::max();
  const int shift = kMinShift + (index - 1) / kSubBuckets;
  const uint64_t sub = static_cast<uint64_t>((index - 1) % kSubBuckets);
  return (uint64_t{1} << shift) + (sub + 1) * (uint64_t{1} << (shift - 2)) - 1;
}

uint64_t HistogramSnapshot::Count() const {
  uint64_t n = 0;
  for (uint64_t c : counts) n += c;
  return n;
}

uint64_t HistogramSnapshot::QuantileNs(double q) const {
  const uint64_t total = Count();
  if (total == 0) return 0;
  q = std::min(1.0, std::max(q, 0.0));
  // The rank of the q-quantile, 1-based: at least the first sample.
  const uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * total)));
  uint64_t seen = 0;
  for (int i = 0; i < LatencyBuckets::kCount; ++i) {
    seen += counts[i];
    if (seen >= rank) {
      if (i == LatencyBuckets::kCount - 1) return uint64_t{1} << LatencyBuckets::kMaxShift;
      return LatencyBuckets::UpperBoundNs(i);
    }
  }
  return uint64_t{1} << LatencyBuckets::kMaxShift;
}

HistogramSnapshot& HistogramSnapshot::operator+=(const HistogramSnapshot& other) {
  for (int i = 0; i < LatencyBuckets::kCount; ++i) counts[i] += other.counts[i];
  sum_ns += other.sum_ns;
  return *this;
}

StatsSnapshot& StatsSnapshot::operator+=(const StatsSnapshot& other) {
  for (int k = 0; k < kOpKinds; ++k) {
    op[k].ops += other.op[k].ops;
    op[k].bytes += other.op[k].bytes;
    op[k].errors += other.op[k].errors;
    op[k].latency += other.op[k].latency;
  }
  in_flight += other.in_flight;
  reconnects += other.reconnects;
  recvs += other.recvs;
  ring_enters += other.ring_enters;
  acks_pushed += other.acks_pushed;
  return *this;
}

void QueueStats::OnComplete(OpKind kind, uint64_t bytes, uint64_t latency_ns, bool error) {
  Op& o = op_[static_cast<int>(kind)];
  // The histogram first, the op count last: a reader that sees an op
  // counted mostly finds its latency counted too.
  Add(o.buckets[LatencyBuckets::Index(latency_ns)], 1);
  Add(o.sum_ns, latency_ns);
  Add(o.bytes, bytes);
  if (error) Add(o.errors, 1);
  Add(o.ops, 1);
  in_flight_.store(in_flight_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

StatsSnapshot QueueStats::Snapshot() const {
  StatsSnapshot s;
  for (int k = 0; k < kOpKinds; ++k) {
    const Op& o = op_[k];
    OpSnapshot& out = s.op[k];
    out.ops = o.ops.load(std::memory_order_relaxed);
    out.bytes = o.bytes.load(std::memory_order_relaxed);
    out.errors = o.errors.load(std::memory_order_relaxed);
    out.latency.sum_ns = o.sum_ns.load(std::memory_order_relaxed);
    for (int i = 0; i < LatencyBuckets::kCount; ++i) {
      out.latency.counts[i] = o.buckets[i].load(std::memory_order_relaxed);
    }
  }
  s.in_flight = in_flight_.load(std::memory_order_relaxed);
  s.reconnects = reconnects_.load(std::memory_order_relaxed);
  s.recvs = recvs_.load(std::memory_order_relaxed);
  s.ring_enters = ring_enters_.load(std::memory_order_relaxed);
  s.acks_pushed = acks_pushed_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace ublkgw::engine
