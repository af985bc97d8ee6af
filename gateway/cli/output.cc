#include "cli/output.h"

#include "absl/strings/str_format.h"
#include "cli/exit_codes.h"
#include "nlohmann/json.hpp"

namespace ublkgw::cli {

int ReportError(const absl::Status& status, bool json, std::ostream& out, std::ostream& err) {
  err << "ublkgw: error: " << status.message() << "\n";
  if (json) {
    out << nlohmann::json{{"error",
                           {{"code", absl::StatusCodeToString(status.code())},
                            {"message", std::string(status.message())}}}}
               .dump(2)
        << "\n";
  }
  return ExitCodeFor(status);
}

std::string HumanSize(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? absl::StrFormat("%d B", bytes) : absl::StrFormat("%.1f %s", v, units[u]);
}

}  // namespace ublkgw::cli
