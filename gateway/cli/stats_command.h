// `ublkgw stats VOLUME [--watch]`: a volume's counters and latency
// percentiles since attach, or, watching, per-interval rates like iostat.
#ifndef UBLKGW_CLI_STATS_COMMAND_H_
#define UBLKGW_CLI_STATS_COMMAND_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "cli/daemon_client.h"
#include "nlohmann/json.hpp"
#include "ublkgw/v1/ublkgw.pb.h"

namespace ublkgw::cli {

struct StatsOptions {
  std::string target;  // N or /dev/ublkbN
  bool watch = false;
  double interval_seconds = 1;
  uint32_t count = 0;  // with --watch: lines to print; 0 until interrupted
};

int RunStats(const ClientOptions& client, const StatsOptions& options, std::ostream& out,
             std::ostream& err);

// The quantile `q` of the requests counted between two samples of one
// histogram: the upper bound of the bucket holding it; 0 if none.
uint64_t IntervalQuantileNs(const v1::LatencyHistogram& before, const v1::LatencyHistogram& now,
                            double q);
// "850ns", "45us", "1.2ms", "3.4s"; "-" for 0 (no requests).
std::string HumanLatency(uint64_t ns);

// The one-shot report.
std::string RenderStats(const v1::GetVolumeResponse& volume);
// Watching: the header, and one line for the interval between two samples.
std::string RenderWatchHeader();
std::string RenderWatchLine(const v1::VolumeStats& before, const v1::VolumeStats& now);
nlohmann::json WatchJson(const v1::VolumeStats& before, const v1::VolumeStats& now);

}  // namespace ublkgw::cli

#endif  // UBLKGW_CLI_STATS_COMMAND_H_
