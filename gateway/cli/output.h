// Output every CLI command shares: errors (human and --json) and sizes.
#ifndef UBLKGW_CLI_OUTPUT_H_
#define UBLKGW_CLI_OUTPUT_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/status.h"

namespace ublkgw::cli {

// Prints `status` as the CLI's error: to `err` always, and as
// {"error": {"code", "message"}} on `out` when `json`. Returns
// ExitCodeFor(status).
int ReportError(const absl::Status& status, bool json, std::ostream& out, std::ostream& err);

// "512 B", "1.0 GiB", ...
std::string HumanSize(uint64_t bytes);

}  // namespace ublkgw::cli

#endif  // UBLKGW_CLI_OUTPUT_H_
