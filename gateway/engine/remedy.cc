#include "engine/remedy.h"

#include <string>

#include "absl/strings/cord.h"

namespace ublkgw::engine {
namespace {

constexpr char kPayload[] = "ublkgw.engine/Remedy";

}  // namespace

absl::Status WithRemedy(absl::Status status, Remedy remedy) {
  if (!status.ok() && remedy != Remedy::kNone) {
    status.SetPayload(kPayload, absl::Cord(std::string(1, static_cast<char>(remedy))));
  }
  return status;
}

Remedy RemedyOf(const absl::Status& status) {
  const auto payload = status.GetPayload(kPayload);
  if (!payload.has_value() || payload->size() != 1) return Remedy::kNone;
  const auto value = static_cast<uint8_t>((*payload)[0]);
  if (value > static_cast<uint8_t>(kLastRemedy)) return Remedy::kNone;
  return static_cast<Remedy>(value);
}

}  // namespace ublkgw::engine
