// Latency buckets, quantiles and the single-writer counters.
#include "engine/stats.h"

#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ublkgw::engine {
namespace {

TEST(LatencyBucketsTest, EveryValueLiesAtOrBelowItsBucketsBoundAndAboveThePrevious) {
  for (uint64_t ns : {0ull, 1ull, 1023ull, 1024ull, 1279ull, 1280ull, 2047ull, 2048ull, 99999ull,
                      123456789ull, (1ull << 36) - 1, 1ull << 36, ~0ull}) {
    const int i = LatencyBuckets::Index(ns);
    ASSERT_GE(i, 0);
    ASSERT_LT(i, LatencyBuckets::kCount);
    EXPECT_LE(ns, LatencyBuckets::UpperBoundNs(i)) << ns;
    if (i > 0) {
      EXPECT_GT(ns, LatencyBuckets::UpperBoundNs(i - 1)) << ns;
    }
  }
}

TEST(LatencyBucketsTest, BoundsAscendAndStayWithinAQuarterOfTheirValues) {
  EXPECT_EQ(LatencyBuckets::UpperBoundNs(0), 1023u);
  EXPECT_EQ(LatencyBuckets::UpperBoundNs(1), 1279u);  // 1024 + 256 - 1
  EXPECT_EQ(LatencyBuckets::UpperBoundNs(4), 2047u);
  for (int i = 1; i < LatencyBuckets::kCount - 1; ++i) {
    const uint64_t lower = LatencyBuckets::UpperBoundNs(i - 1) + 1;
    const uint64_t upper = LatencyBuckets::UpperBoundNs(i);
    ASSERT_GT(upper, lower);
    EXPECT_LE(static_cast<double>(upper), 1.25 * static_cast<double>(lower)) << i;
  }
  EXPECT_EQ(LatencyBuckets::UpperBoundNs(LatencyBuckets::kCount - 1), ~0ull);
}

TEST(HistogramSnapshotTest, QuantilesReportTheBucketHoldingThem) {
  HistogramSnapshot h;
  EXPECT_EQ(h.QuantileNs(0.5), 0u);
  // 90 requests at 10 us, 9 at 1 ms, 1 at 100 ms.
  h.counts[LatencyBuckets::Index(10'000)] += 90;
  h.counts[LatencyBuckets::Index(1'000'000)] += 9;
  h.counts[LatencyBuckets::Index(100'000'000)] += 1;
  EXPECT_EQ(h.Count(), 100u);
  EXPECT_EQ(h.QuantileNs(0.5), LatencyBuckets::UpperBoundNs(LatencyBuckets::Index(10'000)));
  EXPECT_EQ(h.QuantileNs(0.9), LatencyBuckets::UpperBoundNs(LatencyBuckets::Index(10'000)));
  EXPECT_EQ(h.QuantileNs(0.99), LatencyBuckets::UpperBoundNs(LatencyBuckets::Index(1'000'000)));
  EXPECT_EQ(h.QuantileNs(0.999), LatencyBuckets::UpperBoundNs(LatencyBuckets::Index(100'000'000)));
  EXPECT_GE(h.QuantileNs(0.5), 10'000u);
  EXPECT_LE(h.QuantileNs(0.5), 12'500u);
}

TEST(HistogramSnapshotTest, TheUnboundedBucketReportsItsLowerBound) {
  HistogramSnapshot h;
  h.counts[LatencyBuckets::kCount - 1] = 1;
  EXPECT_EQ(h.QuantileNs(0.5), 1ull << 36);
}

TEST(QueueStatsTest, CountsOpsBytesErrorsAndInFlight) {
  QueueStats stats;
  stats.OnStart();
  stats.OnStart();
  stats.OnStart();
  EXPECT_EQ(stats.Snapshot().in_flight, 3u);
  stats.OnComplete(OpKind::kRead, 4096, 20'000, false);
  stats.OnComplete(OpKind::kWrite, 131072, 50'000, false);
  stats.OnComplete(OpKind::kWrite, 512, 70'000, true);
  stats.OnReconnect();
  const StatsSnapshot s = stats.Snapshot();
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_EQ(s.reconnects, 1u);
  EXPECT_EQ(s.of(OpKind::kRead).ops, 1u);
  EXPECT_EQ(s.of(OpKind::kRead).bytes, 4096u);
  EXPECT_EQ(s.of(OpKind::kWrite).ops, 2u);
  EXPECT_EQ(s.of(OpKind::kWrite).bytes, 131072u + 512u);
  EXPECT_EQ(s.of(OpKind::kWrite).errors, 1u);
  EXPECT_EQ(s.of(OpKind::kWrite).latency.Count(), 2u);
  EXPECT_EQ(s.of(OpKind::kWrite).latency.sum_ns, 120'000u);
  EXPECT_EQ(s.of(OpKind::kFlush).ops, 0u);

  StatsSnapshot total = s;
  total += s;
  EXPECT_EQ(total.of(OpKind::kWrite).ops, 4u);
  EXPECT_EQ(total.of(OpKind::kWrite).latency.Count(), 4u);
}

// One writer (the queue's thread), one reader: the reader never sees a
// counter go backwards, and sees the final values once the writer is done.
TEST(QueueStatsTest, AReaderSeesMonotonicCountersWhileTheWriterRuns) {
  QueueStats stats;
  constexpr uint64_t kOps = 200'000;
  std::thread writer([&] {
    for (uint64_t i = 0; i < kOps; ++i) {
      stats.OnStart();
      stats.OnComplete(OpKind::kRead, 4096, i % 100'000, false);
    }
  });
  uint64_t last = 0;
  while (last < kOps) {
    const uint64_t now = stats.Snapshot().of(OpKind::kRead).ops;
    ASSERT_GE(now, last);
    last = now;
  }
  writer.join();
  const StatsSnapshot s = stats.Snapshot();
  EXPECT_EQ(s.of(OpKind::kRead).ops, kOps);
  EXPECT_EQ(s.of(OpKind::kRead).bytes, kOps * 4096);
  EXPECT_EQ(s.of(OpKind::kRead).latency.Count(), kOps);
  EXPECT_EQ(s.in_flight, 0u);
}

TEST(OpKindTest, NamesMatchTheApi) {
  EXPECT_EQ(OpKindName(OpKind::kRead), "read");
  EXPECT_EQ(OpKindName(OpKind::kWriteZeroes), "write_zeroes");
}

}  // namespace
}  // namespace ublkgw::engine
