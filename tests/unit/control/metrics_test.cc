// The Prometheus exposition, parsed back line by line, and the listener
// serving it on loopback.
#include "control/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "control/stats_proto.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw::control {
namespace {

using ::testing::HasSubstr;
using ::ublkgw::testing::IsOk;

// series (name{labels}) -> value; fails the test on a malformed line, a
// sample before its family's TYPE, or a family split in two.
std::map<std::string, double> Parse(const std::string& text) {
  std::map<std::string, double> out;
  std::string family;
  std::set<std::string> seen_families;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "# HELP ")) continue;
    if (absl::StartsWith(line, "# TYPE ")) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      EXPECT_EQ(parts.size(), 4u) << line;
      family = parts[2];
      EXPECT_TRUE(seen_families.insert(family).second) << "family split: " << family;
      continue;
    }
    const size_t space = line.rfind(' ');
    EXPECT_NE(space, absl::string_view::npos) << line;
    const std::string series(line.substr(0, space));
    EXPECT_TRUE(absl::StartsWith(series, family)) << series << " outside its family " << family;
    double value = 0;
    EXPECT_TRUE(absl::SimpleAtod(line.substr(space + 1), &value)) << line;
    EXPECT_TRUE(out.emplace(series, value).second) << "duplicate " << series;
  }
  return out;
}

v1::GetVolumeResponse Volume() {
  engine::StatsSnapshot s;
  auto& reads = s.op[static_cast<int>(engine::OpKind::kRead)];
  reads.ops = 10;
  reads.bytes = 40960;
  reads.errors = 1;
  reads.latency.counts[engine::LatencyBuckets::Index(1500)] = 4;       // 1.5 us
  reads.latency.counts[engine::LatencyBuckets::Index(3'000'000)] = 6;  // 3 ms
  reads.latency.sum_ns = 4 * 1500 + 6 * 3'000'000;
  s.in_flight = 2;
  v1::GetVolumeResponse r;
  *r.mutable_stats() = StatsToProto(s);
  r.mutable_volume()->set_device_path("/dev/ublkb0");
  r.mutable_volume()->set_uri("nbd://[::1]/a\"b");
  r.mutable_volume()->set_size_bytes(1 << 30);
  r.mutable_volume()->set_health(v1::HEALTH_OK);
  return r;
}

TEST(RenderMetricsTest, EverySeriesParsesAndCountsAgree) {
  const std::string text = RenderMetrics({Volume()}, "1.2.3");
  const auto m = Parse(text);
  const std::string v = R"(device="/dev/ublkb0",uri="nbd://[::1]/a\"b")";
  EXPECT_EQ(m.at(R"(ublkgw_build_info{version="1.2.3"})"), 1);
  EXPECT_EQ(m.at("ublkgw_volumes"), 1);
  EXPECT_EQ(m.at("ublkgw_volume_up{" + v + "}"), 1);
  EXPECT_EQ(m.at("ublkgw_volume_size_bytes{" + v + "}"), 1 << 30);
  EXPECT_EQ(m.at("ublkgw_volume_in_flight_requests{" + v + "}"), 2);
  EXPECT_EQ(m.at("ublkgw_volume_ops_total{" + v + R"(,op="read"})"), 10);
  EXPECT_EQ(m.at("ublkgw_volume_bytes_total{" + v + R"(,op="read"})"), 40960);
  EXPECT_EQ(m.at("ublkgw_volume_errors_total{" + v + R"(,op="read"})"), 1);
  EXPECT_EQ(m.at("ublkgw_volume_ops_total{" + v + R"(,op="write_zeroes"})"), 0);
  const std::string h = "ublkgw_volume_latency_seconds";
  const std::string read = v + R"(,op="read")";
  // 1.5 us is under 2^11 ns; 3 ms under 2^22 ns (4.19 ms), not 2^21 (2.1 ms).
  EXPECT_EQ(m.at(h + "_bucket{" + read + R"(,le="1.024e-06"})"), 0);
  EXPECT_EQ(m.at(h + "_bucket{" + read + R"(,le="2.048e-06"})"), 4);
  EXPECT_EQ(m.at(h + "_bucket{" + read + R"(,le="0.002097152"})"), 4);
  EXPECT_EQ(m.at(h + "_bucket{" + read + R"(,le="0.004194304"})"), 10);
  EXPECT_EQ(m.at(h + "_bucket{" + read + R"(,le="+Inf"})"), 10);
  EXPECT_EQ(m.at(h + "_count{" + read + "}"), 10);
  EXPECT_NEAR(m.at(h + "_sum{" + read + "}"), 0.018006, 1e-9);
  // Buckets are cumulative: in the order printed, never decreasing.
  double last = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (!absl::StartsWith(line, h + "_bucket{" + read)) continue;
    double value = 0;
    ASSERT_TRUE(absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value));
    EXPECT_GE(value, last) << line;
    last = value;
  }
  EXPECT_EQ(last, 10);
}

TEST(RenderMetricsTest, NoVolumesStillDescribesTheDaemon) {
  const auto m = Parse(RenderMetrics({}, "0.1.0"));
  EXPECT_EQ(m.at("ublkgw_volumes"), 0);
  EXPECT_EQ(m.size(), 2u);
}

std::string Get(uint16_t port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) response.append(buf, static_cast<size_t>(n));
  close(fd);
  return response;
}

TEST(MetricsServerTest, ServesMetricsOnLoopback) {
  int renders = 0;
  auto server = MetricsServer::Start("127.0.0.1:0", [&] {
    ++renders;
    return std::string("ublkgw_volumes 0\n");
  });
  ASSERT_THAT(server, IsOk());
  ASSERT_NE((*server)->port(), 0);
  const std::string ok = Get((*server)->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(ok, HasSubstr("HTTP/1.1 200 OK"));
  EXPECT_THAT(ok, HasSubstr("text/plain; version=0.0.4"));
  EXPECT_THAT(ok, HasSubstr("Content-Length: 17\r\n"));
  EXPECT_THAT(ok, HasSubstr("\r\n\r\nublkgw_volumes 0\n"));
  EXPECT_THAT(Get((*server)->port(), "GET /other HTTP/1.0\r\n\r\n"), HasSubstr("404"));
  EXPECT_THAT(Get((*server)->port(), "POST /metrics HTTP/1.0\r\n\r\n"), HasSubstr("405"));
  // A client that sends nothing is dropped after the deadline; the next
  // one is served.
  int idle = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((*server)->port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(idle, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_THAT(Get((*server)->port(), "GET /metrics HTTP/1.0\r\n\r\n"), HasSubstr("200 OK"));
  close(idle);
  // One that trickles a byte at a time is cut off at the deadline too.
  int slow = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(connect(slow, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const absl::Time start = absl::Now();
  bool cut = false;
  for (int i = 0; i < 100 && !cut; ++i) {
    cut = send(slow, "G", 1, MSG_NOSIGNAL) != 1;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(cut) << "a trickling client was still connected after 10 s";
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  close(slow);
  EXPECT_THAT(Get((*server)->port(), "GET /metrics HTTP/1.0\r\n\r\n"), HasSubstr("200 OK"));
  EXPECT_EQ(renders, 3);
}

TEST(MetricsServerTest, BadAddressesAreRefusedWithTheFormat) {
  EXPECT_THAT(MetricsServer::Start("localhost", [] { return std::string(); }),
              ublkgw::testing::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HOST:PORT")));
  EXPECT_THAT(MetricsServer::Start("127.0.0.1:99999", [] { return std::string(); }),
              ublkgw::testing::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("port")));
  EXPECT_THAT(MetricsServer::Start("not an address:80", [] { return std::string(); }),
              ublkgw::testing::StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace ublkgw::control
