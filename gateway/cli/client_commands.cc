#include "cli/client_commands.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "cli/exit_codes.h"
#include "cli/output.h"

namespace ublkgw::cli {

std::string RenderVolumes(const v1::ListResponse& list) {
  std::string out = absl::StrFormat("%-14s %-10s %-6s %-6s %-9s %-3s %-12s %s\n", "DEVICE", "SIZE",
                                    "QUEUES", "DEPTH", "PATH", "RO", "HEALTH", "URI");
  for (const auto& v : list.volumes()) {
    absl::StrAppendFormat(&out, "%-14s %-10s %-6d %-6d %-9s %-3s %-12s %s\n", v.device_path(),
                          v.health() == v1::HEALTH_RESTORING ? "-" : HumanSize(v.size_bytes()),
                          v.queues(), v.depth(), DataPathName(v.data_path()),
                          v.read_only() ? "yes" : "no", HealthName(v.health()), v.uri());
    if (!v.health_detail().empty()) absl::StrAppend(&out, "  ", v.health_detail(), "\n");
  }
  if (list.volumes().empty()) out += "(no volumes attached)\n";
  return out;
}

absl::StatusOr<uint64_t> ParseSize(const std::string& text) {
  std::string digits = text;
  uint64_t unit = 1;
  if (!digits.empty() && absl::ascii_isalpha(static_cast<unsigned char>(digits.back()))) {
    const char suffix = absl::ascii_toupper(static_cast<unsigned char>(digits.back()));
    digits.pop_back();
    const std::string units = "KMGTP";
    const size_t at = units.find(suffix);
    if (at == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "size '", text, "': the suffix must be K, M, G, T or P (powers of 1024)"));
    }
    unit = uint64_t{1} << (10 * (at + 1));
  }
  uint64_t n = 0;
  if (!absl::SimpleAtoi(digits, &n) || n == 0 || n > UINT64_MAX / unit) {
    return absl::InvalidArgumentError(
        absl::StrCat("size '", text, "' is not a positive number of bytes (e.g. 4096, 512M, 10G)"));
  }
  return n * unit;
}

int RunAttach(const ClientOptions& client, const AttachOptions& options, std::ostream& out,
              std::ostream& err) {
  v1::AttachRequest request;
  request.set_uri(options.uri);
  request.set_queues(options.queues);
  request.set_depth(options.depth);
  request.set_read_only(options.read_only);
  // Seconds to whole milliseconds, within the API's day (the daemon refuses
  // more); a positive value never rounds down to 0, which means "never".
  auto ms = [](double seconds) {
    const double clamped = std::clamp(seconds * 1000, 0.0, 86'400'000.0);
    return static_cast<uint32_t>(seconds > 0 ? std::max(1.0, std::round(clamped)) : 0.0);
  };
  if (options.io_timeout_s >= 0) request.set_io_timeout_ms(ms(options.io_timeout_s));
  if (options.reconnect_deadline_s >= 0) {
    request.set_reconnect_deadline_ms(ms(options.reconnect_deadline_s));
  }
  if (options.data_path == "copy") {
    request.set_data_path(v1::DATA_PATH_COPY);
  } else if (options.data_path == "zero-copy") {
    request.set_data_path(v1::DATA_PATH_ZERO_COPY);
  } else if (options.data_path == "fused") {
    request.set_data_path(v1::DATA_PATH_FUSED);
  } else if (options.data_path != "auto") {
    return ReportError(
        absl::InvalidArgumentError(absl::StrCat("unknown data path '", options.data_path,
                                                "': use auto, copy, zero-copy or fused")),
        client.json, out, err);
  }
  auto response = Call(client, &v1::Ublkgw::Stub::Attach, request);
  if (!response.ok()) return ReportError(response.status(), client.json, out, err);
  if (client.json) {
    out << ToJson(response->volume());
  } else {
    if (!response->volume().note().empty()) {
      err << "ublkgw: note: " << response->volume().note() << "\n";
    }
    out << response->volume().device_path() << "\n";
  }
  return kExitOk;
}

int RunDetach(const ClientOptions& client, const DetachOptions& options, std::ostream& out,
              std::ostream& err) {
  v1::DetachRequest request;
  if (absl::Status s = SetTarget(options.target, request); !s.ok()) {
    return ReportError(s, client.json, out, err);
  }
  request.set_force(options.force);
  auto response = Call(client, &v1::Ublkgw::Stub::Detach, request);
  if (!response.ok()) return ReportError(response.status(), client.json, out, err);
  if (client.json) out << "{}\n";
  return kExitOk;
}

int RunList(const ClientOptions& client, std::ostream& out, std::ostream& err) {
  auto response = Call(client, &v1::Ublkgw::Stub::List, v1::ListRequest{});
  if (!response.ok()) return ReportError(response.status(), client.json, out, err);
  out << (client.json ? ToJson(*response) : RenderVolumes(*response));
  return kExitOk;
}

int RunResize(const ClientOptions& client, const ResizeOptions& options, std::ostream& out,
              std::ostream& err) {
  v1::ResizeRequest request;
  if (absl::Status s = SetTarget(options.target, request); !s.ok()) {
    return ReportError(s, client.json, out, err);
  }
  if (!options.size.empty()) {
    auto size = ParseSize(options.size);
    if (!size.ok()) return ReportError(size.status(), client.json, out, err);
    request.set_size_bytes(*size);
  }
  auto response = Call(client, &v1::Ublkgw::Stub::Resize, request);
  if (!response.ok()) return ReportError(response.status(), client.json, out, err);
  if (client.json) {
    out << ToJson(response->volume());
  } else {
    out << response->volume().device_path() << ": " << HumanSize(response->volume().size_bytes())
        << " (" << response->volume().size_bytes() << " bytes)\n";
  }
  return kExitOk;
}

int RunDaemonInfo(const ClientOptions& client, std::ostream& out, std::ostream& err) {
  auto info = Call(client, &v1::Ublkgw::Stub::GetDaemonInfo, v1::GetDaemonInfoRequest{});
  if (!info.ok()) return ReportError(info.status(), client.json, out, err);
  if (client.json) {
    out << ToJson(*info);
    return kExitOk;
  }
  const absl::Time started = absl::FromUnixNanos(static_cast<int64_t>(info->started_unix_time_ns()));
  out << "version:     " << info->version() << " (pid " << info->pid() << ", up "
      << absl::FormatDuration(absl::Trunc(absl::Now() - started, absl::Seconds(1))) << ")\n"
      << "kernel:      " << info->kernel_release() << "\n"
      << "ublk:        "
      << (info->ublk_available() ? absl::StrJoin(info->ublk_features(), " ")
                                 : "unavailable: " + info->ublk_unavailable_reason())
      << "\n"
      << "data paths:  " << absl::StrJoin(info->data_paths(), ", ") << "\n"
      << "fixed-buffer socket operations (the zero-copy path's), as this kernel answered:\n"
      << info->fixed_buffer_probe()
      << "state dir:   " << (info->state_dir().empty() ? "(none: nothing is recorded)" : info->state_dir())
      << "\n"
      << "listeners:   " << absl::StrJoin(info->listeners(), ", ") << "\n"
      << "volumes:     " << info->volumes() << "\n";
  return kExitOk;
}

}  // namespace ublkgw::cli
