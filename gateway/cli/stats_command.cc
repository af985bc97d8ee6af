#include "cli/stats_command.h"

#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "cli/exit_codes.h"
#include "cli/output.h"

namespace ublkgw::cli {

namespace {

struct OpRow {
  const char* name;
  const v1::OpStats& (v1::VolumeStats::*get)() const;
};
constexpr OpRow kOps[] = {
    {"read", &v1::VolumeStats::read},       {"write", &v1::VolumeStats::write},
    {"flush", &v1::VolumeStats::flush},     {"discard", &v1::VolumeStats::discard},
    {"write_zeroes", &v1::VolumeStats::write_zeroes},
};

uint64_t Delta(uint64_t now, uint64_t before) { return now >= before ? now - before : now; }

double Seconds(const v1::VolumeStats& before, const v1::VolumeStats& now) {
  const uint64_t ns = Delta(now.unix_time_ns(), before.unix_time_ns());
  return ns == 0 ? 1.0 : static_cast<double>(ns) / 1e9;
}

}  // namespace

uint64_t IntervalQuantileNs(const v1::LatencyHistogram& before, const v1::LatencyHistogram& now,
                            double q) {
  std::map<uint64_t, uint64_t> earlier;
  for (const auto& b : before.buckets()) earlier[b.le_ns()] = b.count();
  std::map<uint64_t, uint64_t> delta;  // ascending bounds
  uint64_t total = 0;
  for (const auto& b : now.buckets()) {
    auto it = earlier.find(b.le_ns());
    const uint64_t d = Delta(b.count(), it == earlier.end() ? 0 : it->second);
    if (d == 0) continue;
    delta[b.le_ns()] = d;
    total += d;
  }
  if (total == 0) return 0;
  const auto rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(total))));
  uint64_t seen = 0;
  for (const auto& [le, n] : delta) {
    seen += n;
    if (seen >= rank) return le;
  }
  return delta.rbegin()->first;
}

std::string HumanLatency(uint64_t ns) {
  if (ns == 0) return "-";
  if (ns == UINT64_MAX) return ">69s";
  if (ns < 1000) return absl::StrFormat("%dns", ns);
  if (ns < 1'000'000) return absl::StrFormat("%.0fus", static_cast<double>(ns) / 1e3);
  if (ns < 1'000'000'000) return absl::StrFormat("%.1fms", static_cast<double>(ns) / 1e6);
  return absl::StrFormat("%.1fs", static_cast<double>(ns) / 1e9);
}

std::string RenderStats(const v1::GetVolumeResponse& r) {
  const v1::Volume& v = r.volume();
  std::string out = absl::StrFormat("%s  %s\nhealth %s, data path %s, in flight %d, reconnects %d\n",
                                    v.device_path(), v.uri(), HealthName(v.health()),
                                    DataPathName(v.data_path()), r.stats().in_flight(),
                                    r.stats().reconnects());
  if (!v.health_detail().empty()) absl::StrAppend(&out, v.health_detail(), "\n");
  const v1::VolumeStats& s = r.stats();
  const uint64_t ops = s.read().ops() + s.write().ops() + s.flush().ops() + s.discard().ops() +
                       s.write_zeroes().ops();
  auto per_op = [ops](uint64_t n) {
    return ops == 0 ? std::string("-") : absl::StrFormat("%.2f", static_cast<double>(n) / ops);
  };
  absl::StrAppendFormat(&out, "socket recvs %d (%s per request), ring enters %d (%s per request)\n",
                        s.socket_recvs(), per_op(s.socket_recvs()), s.ring_enters(),
                        per_op(s.ring_enters()));
  auto seconds = [](uint32_t ms, const char* zero) {
    return ms == 0 ? std::string(zero) : absl::FormatDuration(absl::Milliseconds(ms));
  };
  absl::StrAppend(&out, "io timeout ", seconds(v.io_timeout_ms(), "none"), ", reconnect deadline ",
                  seconds(v.reconnect_deadline_ms(), "none (I/O fails at once)"), "\n");
  absl::StrAppendFormat(&out, "%-13s %12s %11s %8s %8s %8s %8s %8s\n", "OP", "OPS", "BYTES",
                        "ERRORS", "P50", "P90", "P99", "P99.9");
  for (const OpRow& op : kOps) {
    const v1::OpStats& s = (r.stats().*op.get)();
    absl::StrAppendFormat(&out, "%-13s %12d %11s %8d %8s %8s %8s %8s\n", op.name, s.ops(),
                          HumanSize(s.bytes()), s.errors(), HumanLatency(s.latency().p50_ns()),
                          HumanLatency(s.latency().p90_ns()), HumanLatency(s.latency().p99_ns()),
                          HumanLatency(s.latency().p999_ns()));
  }
  out += "Latency: from the kernel handing a request to ublkgwd to its completion; each\n"
         "percentile is the upper bound of its histogram bucket (within 25%).\n";
  return out;
}

std::string RenderWatchHeader() {
  return absl::StrFormat("%-8s %9s %9s %9s %9s %7s %7s %7s %5s %8s %8s %8s %8s %6s\n", "TIME",
                         "r/s", "w/s", "rMiB/s", "wMiB/s", "f/s", "d/s", "z/s", "infl", "r_p50",
                         "r_p99", "w_p50", "w_p99", "errors");
}

nlohmann::json WatchJson(const v1::VolumeStats& before, const v1::VolumeStats& now) {
  const double secs = Seconds(before, now);
  nlohmann::json j;
  j["device_id"] = now.device_id();
  j["unix_time_ns"] = now.unix_time_ns();
  j["interval_seconds"] = secs;
  j["in_flight"] = now.in_flight();
  j["health"] = HealthName(now.health());
  for (const OpRow& op : kOps) {
    const v1::OpStats& a = (before.*op.get)();
    const v1::OpStats& b = (now.*op.get)();
    nlohmann::json o;
    o["ops"] = Delta(b.ops(), a.ops());
    o["bytes"] = Delta(b.bytes(), a.bytes());
    o["errors"] = Delta(b.errors(), a.errors());
    o["ops_per_second"] = static_cast<double>(Delta(b.ops(), a.ops())) / secs;
    o["bytes_per_second"] = static_cast<double>(Delta(b.bytes(), a.bytes())) / secs;
    o["p50_ns"] = IntervalQuantileNs(a.latency(), b.latency(), 0.50);
    o["p99_ns"] = IntervalQuantileNs(a.latency(), b.latency(), 0.99);
    j[op.name] = o;
  }
  return j;
}

std::string RenderWatchLine(const v1::VolumeStats& before, const v1::VolumeStats& now) {
  const double secs = Seconds(before, now);
  auto rate = [&](const v1::OpStats& (v1::VolumeStats::*get)() const) {
    return static_cast<double>(Delta((now.*get)().ops(), (before.*get)().ops())) / secs;
  };
  auto mib = [&](const v1::OpStats& (v1::VolumeStats::*get)() const) {
    return static_cast<double>(Delta((now.*get)().bytes(), (before.*get)().bytes())) / secs /
           (1024.0 * 1024.0);
  };
  uint64_t errors = 0;
  for (const OpRow& op : kOps) errors += Delta((now.*op.get)().errors(), (before.*op.get)().errors());
  const std::string time = absl::FormatTime(
      "%H:%M:%S", absl::FromUnixNanos(static_cast<int64_t>(now.unix_time_ns())), absl::LocalTimeZone());
  return absl::StrFormat(
      "%-8s %9.0f %9.0f %9.1f %9.1f %7.0f %7.0f %7.0f %5d %8s %8s %8s %8s %6d\n", time,
      rate(&v1::VolumeStats::read), rate(&v1::VolumeStats::write), mib(&v1::VolumeStats::read),
      mib(&v1::VolumeStats::write), rate(&v1::VolumeStats::flush), rate(&v1::VolumeStats::discard),
      rate(&v1::VolumeStats::write_zeroes), now.in_flight(),
      HumanLatency(IntervalQuantileNs(before.read().latency(), now.read().latency(), 0.50)),
      HumanLatency(IntervalQuantileNs(before.read().latency(), now.read().latency(), 0.99)),
      HumanLatency(IntervalQuantileNs(before.write().latency(), now.write().latency(), 0.50)),
      HumanLatency(IntervalQuantileNs(before.write().latency(), now.write().latency(), 0.99)),
      errors);
}

int RunStats(const ClientOptions& client, const StatsOptions& options, std::ostream& out,
             std::ostream& err) {
  if (!options.watch) {
    v1::GetVolumeRequest request;
    if (absl::Status s = SetTarget(options.target, request); !s.ok()) {
      return ReportError(s, client.json, out, err);
    }
    auto stub = ConnectToDaemon(client);
    if (!stub.ok()) return ReportError(stub.status(), client.json, out, err);
    grpc::ClientContext ctx;
    SetDeadline(ctx, client);
    v1::GetVolumeResponse response;
    const grpc::Status s = (*stub)->GetVolume(&ctx, request, &response);
    if (!s.ok()) return ReportError(FromGrpc(s), client.json, out, err);
    out << (client.json ? ToJson(response) : RenderStats(response));
    return kExitOk;
  }
  v1::WatchVolumeRequest request;
  if (absl::Status s = SetTarget(options.target, request); !s.ok()) {
    return ReportError(s, client.json, out, err);
  }
  request.set_interval_ms(static_cast<uint32_t>(options.interval_seconds * 1000));
  // The first sample is the baseline for the first line.
  request.set_count(options.count == 0 ? 0 : options.count + 1);
  auto stub = ConnectToDaemon(client);
  if (!stub.ok()) return ReportError(stub.status(), client.json, out, err);
  grpc::ClientContext ctx;  // no deadline: until interrupted or done
  auto reader = (*stub)->WatchVolume(&ctx, request);
  v1::VolumeStats before, now;
  bool have_before = false;
  int lines = 0;
  while (reader->Read(&now)) {
    if (have_before) {
      if (client.json) {
        out << WatchJson(before, now).dump() << "\n";
      } else {
        if (lines % 20 == 0) out << RenderWatchHeader();
        out << RenderWatchLine(before, now);
      }
      out.flush();
      ++lines;
    }
    before = now;
    have_before = true;
  }
  const grpc::Status s = reader->Finish();
  if (!s.ok()) return ReportError(FromGrpc(s), client.json, out, err);
  return kExitOk;
}

}  // namespace ublkgw::cli
