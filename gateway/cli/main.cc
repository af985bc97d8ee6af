// ublkgw: the command-line client of ublkgwd.
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "cli/exit_codes.h"
#include "cli/features_command.h"
#include "ublk/control_device.h"

namespace {

constexpr char kExitCodesHelp[] = R"(Exit codes:
  0  success
  1  other failure
  2  bad command line or argument
  3  no ublk driver on this host (load ublk_drv)
  4  the kernel's ublk driver is too old for the command
  5  permission denied (run as root))";

}  // namespace

int main(int argc, char** argv) {
  using namespace ublkgw::cli;

  CLI::App app{"ublkgw: attach remote NBD exports as local block devices (/dev/ublkbN)."};
  app.set_version_flag("--version", "ublkgw 0.1.0");
  app.require_subcommand(1);
  app.footer(kExitCodesHelp);

  FeaturesOptions features;
  features.device = ublkgw::ublk::kControlDevicePath;
  auto* features_cmd = app.add_subcommand(
      "features", "Show which ublk features this host's kernel supports.");
  features_cmd->add_option("--device", features.device, "ublk control device")
      ->capture_default_str();
  features_cmd->add_flag("--json", features.json, "print JSON for scripts");
  features_cmd->footer(
      "Asks the kernel's ublk driver (UBLK_U_CMD_GET_FEATURES) and lists every\n"
      "feature flag by name. Needs no daemon; needs root.\n\n"
      "Examples:\n"
      "  ublkgw features\n"
      "  ublkgw features --json | jq -r '.supported[]'\n");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 reports --help and --version as "errors" with exit code 0.
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }

  if (*features_cmd) return RunFeatures(features, std::cout, std::cerr);
  return kExitUsage;
}
