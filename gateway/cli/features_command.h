// `ublkgw features`: what the running kernel's ublk driver supports.
#ifndef UBLKGW_CLI_FEATURES_COMMAND_H_
#define UBLKGW_CLI_FEATURES_COMMAND_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace ublkgw::cli {

struct FeaturesOptions {
  std::string device;  // the ublk control device
  bool json = false;
};

// What a feature query found, ready to render.
struct FeatureReport {
  std::string device;
  std::string kernel_release;  // uname -r
  uint64_t mask = 0;
};

// Renders `report` as the human table: every known feature with yes/no.
std::string RenderFeaturesTable(const FeatureReport& report);

// Renders `report` as JSON: {"device", "kernel_release", "mask" (hex
// string), "supported": [names], "unsupported": [names], "unknown_bits"}.
nlohmann::json FeaturesJson(const FeatureReport& report);

// Runs the command: queries the driver, prints to `out` (table or JSON),
// reports errors to `err` (and, with --json, as {"error": ...} on `out`).
// Returns the exit code.
int RunFeatures(const FeaturesOptions& options, std::ostream& out, std::ostream& err);

}  // namespace ublkgw::cli

#endif  // UBLKGW_CLI_FEATURES_COMMAND_H_
