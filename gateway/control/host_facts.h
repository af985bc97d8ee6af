// What this host offers the daemon, for GetFeatures and GetDaemonInfo: the
// kernel release, the ublk driver's features, the data paths they allow,
// and the fixed-buffer probe. The driver is asked by the caller.
#ifndef UBLKGW_CONTROL_HOST_FACTS_H_
#define UBLKGW_CONTROL_HOST_FACTS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "ublkgw/v1/ublkgw.pb.h"

namespace ublkgw::control {

// uname's release; empty if it cannot be asked.
std::string KernelRelease();
// engine::ProbeFixedBuffers on TCP, run once per process (the kernel's
// answers do not change while it runs), or why it failed.
std::string FixedBufferProbe();
// GetFeatures' answer for a ublk driver whose features are `mask`: their
// names, and the data paths a TCP export would get (zero copy only where
// auto would choose it).
v1::GetFeaturesResponse FeaturesResponse(uint64_t mask);
// Fills `info`'s kernel and ublk fields from `features` (GetFeatures' answer,
// or why the driver could not be asked) and the fixed-buffer probe.
void DescribeHost(const absl::StatusOr<v1::GetFeaturesResponse>& features, v1::DaemonInfo& info);

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_HOST_FACTS_H_
