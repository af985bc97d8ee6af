#include "cli/features_command.h"

#include <sys/utsname.h>

#include <bit>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/exit_codes.h"
#include "cli/output.h"
#include "ublk/control_device.h"
#include "ublk/features.h"

namespace ublkgw::cli {

namespace {

std::string KernelRelease() {
  utsname u{};
  if (uname(&u) != 0) return "unknown";
  return u.release;
}

std::string HexMask(uint64_t mask) { return absl::StrFormat("0x%016x", mask); }

}  // namespace

std::string RenderFeaturesTable(const FeatureReport& report) {
  const auto supported = ublk::FeaturesIn(report.mask);
  const auto known = ublk::KnownFeatures();
  std::string out = absl::StrFormat(
      "ublk driver: %s (Linux %s)\nfeatures:    %s (%d of the %d features this build knows)\n\n",
      report.device, report.kernel_release, HexMask(report.mask), supported.size(), known.size());
  absl::StrAppendFormat(&out, "%3s  %-9s  %-30s  %s\n", "BIT", "SUPPORTED", "FEATURE", "GIVES");
  for (const auto& f : known) {
    absl::StrAppendFormat(&out, "%3d  %-9s  %-30s  %s\n", std::countr_zero(f.flag),
                          (report.mask & f.flag) ? "yes" : "no", f.name, f.summary);
  }
  for (int bit : ublk::UnknownFeatureBits(report.mask)) {
    absl::StrAppendFormat(&out, "%3d  %-9s  %-30s  %s\n", bit, "yes", "(unknown)",
                          "newer than this build of ublkgw");
  }
  return out;
}

nlohmann::json FeaturesJson(const FeatureReport& report) {
  nlohmann::json supported = nlohmann::json::array();
  nlohmann::json unsupported = nlohmann::json::array();
  for (const auto& f : ublk::KnownFeatures()) {
    ((report.mask & f.flag) ? supported : unsupported).push_back(f.name);
  }
  return {
      {"device", report.device},
      {"kernel_release", report.kernel_release},
      {"mask", HexMask(report.mask)},
      {"supported", supported},
      {"unsupported", unsupported},
      {"unknown_bits", ublk::UnknownFeatureBits(report.mask)},
  };
}

int RunFeatures(const FeaturesOptions& options, std::ostream& out, std::ostream& err) {
  auto device = ublk::ControlDevice::Open(options.device);
  if (!device.ok()) return ReportError(device.status(), options.json, out, err);
  auto mask = device->GetFeatures();
  if (!mask.ok()) return ReportError(mask.status(), options.json, out, err);

  const FeatureReport report{options.device, KernelRelease(), *mask};
  if (options.json) {
    out << FeaturesJson(report).dump(2) << "\n";
  } else {
    out << RenderFeaturesTable(report);
  }
  return kExitOk;
}

}  // namespace ublkgw::cli
