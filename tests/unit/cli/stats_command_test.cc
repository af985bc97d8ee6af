// The CLI's statistics arithmetic and tables, from API messages.
#include "cli/stats_command.h"

#include "cli/client_commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw::cli {
namespace {

using ::testing::HasSubstr;
using ::ublkgw::testing::IsOkAndHolds;
using ::ublkgw::testing::StatusIs;

v1::LatencyHistogram Histogram(std::vector<std::pair<uint64_t, uint64_t>> buckets) {
  v1::LatencyHistogram h;
  uint64_t n = 0;
  for (const auto& [le, count] : buckets) {
    auto* b = h.add_buckets();
    b->set_le_ns(le);
    b->set_count(count);
    n += count;
  }
  h.set_count(n);
  return h;
}

TEST(IntervalQuantileTest, OnlyTheIntervalsRequestsCount) {
  // Before: 100 slow requests. Interval: 99 fast, 1 slow.
  const auto before = Histogram({{10'239, 0}, {5'242'879, 100}});
  const auto now = Histogram({{10'239, 99}, {5'242'879, 101}});
  EXPECT_EQ(IntervalQuantileNs(before, now, 0.50), 10'239u);
  EXPECT_EQ(IntervalQuantileNs(before, now, 0.99), 10'239u);
  EXPECT_EQ(IntervalQuantileNs(before, now, 1.0), 5'242'879u);
  EXPECT_EQ(IntervalQuantileNs(now, now, 0.5), 0u);  // nothing happened
}

TEST(HumanLatencyTest, PicksAReadableUnit) {
  EXPECT_EQ(HumanLatency(0), "-");
  EXPECT_EQ(HumanLatency(850), "850ns");
  EXPECT_EQ(HumanLatency(45'000), "45us");
  EXPECT_EQ(HumanLatency(1'250'000), "1.2ms");
  EXPECT_EQ(HumanLatency(3'400'000'000), "3.4s");
}

v1::VolumeStats Sample(uint64_t t_ns, uint64_t reads, uint64_t read_bytes, uint64_t writes) {
  v1::VolumeStats s;
  s.set_unix_time_ns(t_ns);
  s.mutable_read()->set_ops(reads);
  s.mutable_read()->set_bytes(read_bytes);
  s.mutable_write()->set_ops(writes);
  return s;
}

TEST(WatchTest, RatesAreOverTheSamplesInterval) {
  const auto a = Sample(1'000'000'000, 100, 100 * 4096, 50);
  const auto b = Sample(3'000'000'000, 2100, 2100 * 4096, 450);
  const nlohmann::json j = WatchJson(a, b);
  EXPECT_DOUBLE_EQ(j["interval_seconds"].get<double>(), 2.0);
  EXPECT_EQ(j["read"]["ops"].get<uint64_t>(), 2000u);
  EXPECT_DOUBLE_EQ(j["read"]["ops_per_second"].get<double>(), 1000.0);
  EXPECT_DOUBLE_EQ(j["read"]["bytes_per_second"].get<double>(), 1000.0 * 4096);
  EXPECT_DOUBLE_EQ(j["write"]["ops_per_second"].get<double>(), 200.0);
  const std::string line = RenderWatchLine(a, b);
  EXPECT_THAT(line, HasSubstr(" 1000 "));
  EXPECT_THAT(line, HasSubstr(" 200 "));
  EXPECT_THAT(line, HasSubstr(" 3.9 "));  // 1000 * 4 KiB/s in MiB/s
  EXPECT_THAT(RenderWatchHeader(), HasSubstr("r_p99"));
}

TEST(RenderTest, ListShowsHealthAndWhatIsWrong) {
  v1::ListResponse list;
  auto* v = list.add_volumes();
  v->set_device_path("/dev/ublkb2");
  v->set_uri("nbd://10.0.0.1/vol");
  v->set_health(v1::HEALTH_DISCONNECTED);
  v->set_health_detail("queue 0: the NBD server closed the connection");
  const std::string table = RenderVolumes(list);
  EXPECT_THAT(table, HasSubstr("HEALTH"));
  EXPECT_THAT(table, HasSubstr("disconnected"));
  EXPECT_THAT(table, HasSubstr("  queue 0: the NBD server closed the connection\n"));
}

TEST(RenderTest, StatsTableHasEveryOperation) {
  v1::GetVolumeResponse r;
  r.mutable_volume()->set_device_path("/dev/ublkb0");
  r.mutable_stats()->mutable_write()->set_ops(7);
  r.mutable_stats()->mutable_write()->mutable_latency()->set_p99_ns(2'000'000);
  r.mutable_volume()->set_io_timeout_ms(30'000);
  r.mutable_volume()->set_reconnect_deadline_ms(600'500);
  const std::string table = RenderStats(r);
  for (const char* op : {"read", "write", "flush", "discard", "write_zeroes"}) {
    EXPECT_THAT(table, HasSubstr(op));
  }
  EXPECT_THAT(table, HasSubstr("2.0ms"));
  EXPECT_THAT(table, HasSubstr("io timeout 30s, reconnect deadline 10m0.5s\n"));
  r.mutable_stats()->set_socket_recvs(14);
  r.mutable_stats()->set_ring_enters(21);
  EXPECT_THAT(RenderStats(r),
              HasSubstr("socket recvs 14 (2.00 per request), ring enters 21 (3.00 per request)\n"));
}

TEST(ParseSizeTest, BytesAndBinarySuffixes) {
  EXPECT_THAT(ParseSize("4096"), IsOkAndHolds(4096u));
  EXPECT_THAT(ParseSize("512M"), IsOkAndHolds(512ull << 20));
  EXPECT_THAT(ParseSize("10g"), IsOkAndHolds(10ull << 30));
  EXPECT_THAT(ParseSize("3X"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("suffix")));
  EXPECT_THAT(ParseSize("0"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseSize("99999999999P"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseSize(""), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace ublkgw::cli
