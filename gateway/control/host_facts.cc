#include "control/host_facts.h"

#include <sys/socket.h>
#include <sys/utsname.h>

#include "absl/strings/str_cat.h"
#include "engine/data_path.h"
#include "ublk/features.h"

namespace ublkgw::control {

std::string KernelRelease() {
  utsname u{};
  return uname(&u) == 0 ? std::string(u.release) : std::string();
}

std::string FixedBufferProbe() {
  auto probe = engine::CachedProbe(AF_INET);
  return probe.ok() ? probe->detail : absl::StrCat("probe failed: ", probe.status().message());
}

v1::GetFeaturesResponse FeaturesResponse(uint64_t mask) {
  v1::GetFeaturesResponse r;
  r.set_kernel_release(KernelRelease());
  r.set_mask(mask);
  for (const auto& f : ublk::FeaturesIn(mask)) r.add_supported(std::string(f.name));
  r.add_data_paths("copy");
  // Zero copy and fused where they would work for a TCP export (unix
  // sockets differ only in SEND_ZC, which neither needs).
  auto probe = engine::CachedProbe(AF_INET);
  if (probe.ok()) {
    auto plan = engine::ChooseDataPath(engine::DataPathMode::kZeroCopy, mask, *probe);
    if (plan.ok() && plan->zero_copy) r.add_data_paths("zero-copy");
    auto fused = engine::ChooseDataPath(engine::DataPathMode::kFused, mask, *probe);
    if (fused.ok()) r.add_data_paths("fused");
  }
  return r;
}

void DescribeHost(const absl::StatusOr<v1::GetFeaturesResponse>& features, v1::DaemonInfo& info) {
  info.set_kernel_release(KernelRelease());
  info.set_ublk_available(features.ok());
  if (features.ok()) {
    info.set_ublk_feature_mask(features->mask());
    for (const auto& name : features->supported()) info.add_ublk_features(name);
    for (const auto& path : features->data_paths()) info.add_data_paths(path);
  } else {
    info.set_ublk_unavailable_reason(std::string(features.status().message()));
  }
  info.set_fixed_buffer_probe(FixedBufferProbe());
}

}  // namespace ublkgw::control
