// Names and meanings of the ublk feature flags, for humans and for JSON.
#ifndef UBLKGW_UBLK_FEATURES_H_
#define UBLKGW_UBLK_FEATURES_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace ublkgw::ublk {

struct FeatureInfo {
  uint64_t flag;             // one kF* bit
  std::string_view name;     // the kernel's name, e.g. "UBLK_F_AUTO_BUF_REG"
  std::string_view summary;  // what it gives a server, in a few words
};

// Every feature flag this build knows, in bit order.
std::span<const FeatureInfo> KnownFeatures();

// The known features set in `mask`, in bit order.
std::vector<FeatureInfo> FeaturesIn(uint64_t mask);

// Bits set in `mask` that this build has no name for (a kernel newer than
// this table), as bit numbers.
std::vector<int> UnknownFeatureBits(uint64_t mask);

}  // namespace ublkgw::ublk

#endif  // UBLKGW_UBLK_FEATURES_H_
