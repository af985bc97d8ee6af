#include "nbd/protocol_error.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace ublkgw::nbd {

namespace {
constexpr char kPayloadUrl[] = "ublkgw.nbd/ProtocolError";
}  // namespace

std::string_view ProtocolErrorName(ProtocolError error) {
  switch (error) {
    case ProtocolError::kBadMagic: return "bad magic";
    case ProtocolError::kUnknownCookie: return "unknown cookie";
    case ProtocolError::kOversizedLength: return "oversized length";
    case ProtocolError::kTruncated: return "truncated message";
    case ProtocolError::kChunkOutOfRange: return "chunk outside its request";
    case ProtocolError::kChunkOverlap: return "overlapping chunks";
    case ProtocolError::kBadErrorChunk: return "bad error chunk";
    case ProtocolError::kUnexpectedChunk: return "unexpected chunk type";
    case ProtocolError::kIncompleteRead: return "incomplete read";
    case ProtocolError::kBadHandshake: return "bad handshake";
    case ProtocolError::kTooFragmented: return "read too fragmented";
  }
  return "unknown";
}

absl::Status ProtocolViolation(ProtocolError error, absl::string_view detail) {
  const std::string_view name = ProtocolErrorName(error);
  absl::Status status = absl::DataLossError(absl::StrCat(
      "NBD server protocol violation (", absl::string_view(name.data(), name.size()), "): ",
      detail));
  status.SetPayload(kPayloadUrl, absl::Cord(std::to_string(static_cast<int>(error))));
  return status;
}

std::string PrintableServerText(absl::string_view text) {
  std::string out(text.substr(0, 512));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return out;
}

std::optional<ProtocolError> GetProtocolError(const absl::Status& status) {
  auto payload = status.GetPayload(kPayloadUrl);
  if (!payload.has_value()) return std::nullopt;
  int value = 0;
  if (!absl::SimpleAtoi(std::string(*payload), &value)) return std::nullopt;
  return static_cast<ProtocolError>(value);
}

}  // namespace ublkgw::nbd
