// Per-volume I/O statistics: operations, bytes, errors and a latency
// histogram per operation type, plus requests in flight.
//
// Each queue worker owns one QueueStats and is its only writer, so the hot
// path never takes a lock and never does an atomic read-modify-write: a
// counter is a relaxed load and store of a word only its thread writes.
// Any thread may take a Snapshot() at any time; a snapshot is a consistent
// view of each counter, not of all of them at one instant (a request may be
// counted in `ops` a moment before its latency lands in the histogram).
#ifndef UBLKGW_ENGINE_STATS_H_
#define UBLKGW_ENGINE_STATS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace ublkgw::engine {

enum class OpKind : uint8_t { kRead, kWrite, kFlush, kDiscard, kWriteZeroes };
inline constexpr int kOpKinds = 5;
std::string_view OpKindName(OpKind kind);  // "read", "write", "flush", "discard", "write_zeroes"

// Log-scale latency buckets in nanoseconds: every power of two from 1 us
// (2^10 ns) to about 69 s (2^36 ns) is split into 4 equal sub-buckets, so a
// bucket's upper bound is at most 25% above any value in it. Bucket 0
// holds everything under 1 us; the last bucket everything above 2^36 ns.
class LatencyBuckets {
 public:
  static constexpr int kMinShift = 10;
  static constexpr int kMaxShift = 36;
  static constexpr int kSubBuckets = 4;
  static constexpr int kCount = (kMaxShift - kMinShift) * kSubBuckets + 2;

  static int Index(uint64_t ns);
  // The largest latency counted in bucket `index` (the last is unbounded:
  // UINT64_MAX).
  static uint64_t UpperBoundNs(int index);
};

// Plain values, copyable, for reports and arithmetic.
struct HistogramSnapshot {
  std::array<uint64_t, LatencyBuckets::kCount> counts{};
  uint64_t sum_ns = 0;

  uint64_t Count() const;
  // The upper bound of the bucket holding the `q`-quantile (0 < q <= 1), so
  // never below the true value; 0 if empty. The last bucket reports its
  // lower bound (2^36 ns), having no upper one.
  uint64_t QuantileNs(double q) const;
  HistogramSnapshot& operator+=(const HistogramSnapshot& other);
};

struct OpSnapshot {
  uint64_t ops = 0;     // completed, successfully or not
  uint64_t bytes = 0;   // of the completed ops' ranges
  uint64_t errors = 0;  // completed with an error
  HistogramSnapshot latency;
};

struct StatsSnapshot {
  std::array<OpSnapshot, kOpKinds> op;
  uint64_t in_flight = 0;   // received from the kernel, not yet completed
  uint64_t reconnects = 0;  // NBD connections re-established
  // What the data path cost in system interfaces: RECVs from the NBD
  // sockets, and io_uring_enter calls (submits and waits) of the queues.
  uint64_t recvs = 0;
  uint64_t ring_enters = 0;
  uint64_t acks_pushed = 0;

  const OpSnapshot& of(OpKind kind) const { return op[static_cast<int>(kind)]; }
  StatsSnapshot& operator+=(const StatsSnapshot& other);
};

// One queue's counters. Writers: the owning worker thread only.
class QueueStats {
 public:
  void OnStart() { Add(in_flight_, 1); }
  // A request of `kind` over `bytes` finished after `latency_ns`.
  void OnComplete(OpKind kind, uint64_t bytes, uint64_t latency_ns, bool error);
  void OnReconnect() { Add(reconnects_, 1); }
  void OnRecv() { Add(recvs_, 1); }
  void OnRingEnter() { Add(ring_enters_, 1); }
  void OnAckPushed() { Add(acks_pushed_, 1); }

  // Any thread.
  StatsSnapshot Snapshot() const;

 private:
  // A counter with one writer: no read-modify-write needed.
  static void Add(std::atomic<uint64_t>& c, uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  struct Op {
    std::atomic<uint64_t> ops{0};
    std::atomic<uint64_t> bytes{0};
    std::atomic<uint64_t> errors{0};
    std::atomic<uint64_t> sum_ns{0};
    std::array<std::atomic<uint64_t>, LatencyBuckets::kCount> buckets{};
  };
  std::array<Op, kOpKinds> op_;
  std::atomic<uint64_t> in_flight_{0};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<uint64_t> recvs_{0};
  std::atomic<uint64_t> ring_enters_{0};
  std::atomic<uint64_t> acks_pushed_{0};
};

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_STATS_H_
