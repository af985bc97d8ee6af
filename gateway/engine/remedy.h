// What an operator can do about an engine error or a device's limit. The
// engine says what happened, in the kernel's and the protocol's words, and
// attaches a Remedy; control/ turns the remedy into the daemon's words (its
// flags and the API's fields). The engine names no flag of the daemon.
#ifndef UBLKGW_ENGINE_REMEDY_H_
#define UBLKGW_ENGINE_REMEDY_H_

#include <cstdint>

#include "absl/status/status.h"

namespace ublkgw::engine {

enum class Remedy : uint8_t {
  kNone,
  kUseCopyDataPath,    // zero copy cannot work here: attach with the copy path
  kEnableSendZc,       // SEND_ZC is off unless the operator sets a threshold
  kAllowSocketOps,     // socket ops the operator ruled out keep a device from being served
  kAllowUserRecovery,  // user recovery is ruled out by the operator
  kUseZeroCopyDataPath,  // the fused path cannot work here: attach with zero copy or auto
};
// The last Remedy (a new one goes after it, and becomes it): a payload
// beyond it reads as kNone.
inline constexpr Remedy kLastRemedy = Remedy::kUseZeroCopyDataPath;

// `status` carrying `remedy` (a payload; an OK status stays as it is).
absl::Status WithRemedy(absl::Status status, Remedy remedy);
// The remedy `status` carries, or kNone.
Remedy RemedyOf(const absl::Status& status);

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_REMEDY_H_
