// Protocol violations by the server, as typed errors. Every byte from the
// server is untrusted: a violation is returned as a DATA_LOSS status that
// carries which rule was broken, so callers (and tests) can tell them apart,
// and the connection that produced it is dropped.
#ifndef UBLKGW_NBD_PROTOCOL_ERROR_H_
#define UBLKGW_NBD_PROTOCOL_ERROR_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace ublkgw::nbd {

enum class ProtocolError {
  kBadMagic,           // a header with the wrong magic for this point
  kUnknownCookie,      // a reply for no request in flight
  kOversizedLength,    // a length beyond what was asked for or allowed
  kTruncated,          // a message shorter than its fixed fields
  kChunkOutOfRange,    // a chunk's offset/length outside its request
  kChunkOverlap,       // two chunks of one read cover the same bytes
  kBadErrorChunk,      // an error chunk with no error or a bad message length
  kUnexpectedChunk,    // a chunk type not allowed for this request
  kIncompleteRead,     // DONE before the read was covered, with no error
  kBadHandshake,       // the server broke a handshake rule
  kTooFragmented,      // one read in more separate pieces than we track
};

std::string_view ProtocolErrorName(ProtocolError error);

// A DATA_LOSS status: "NBD server protocol violation (NAME): `detail`".
absl::Status ProtocolViolation(ProtocolError error, absl::string_view detail);

// Text from the server (messages, names) made safe for our messages and
// logs: at most 512 bytes, control characters as '?'.
std::string PrintableServerText(absl::string_view text);

// The violation `status` carries, if it is one.
std::optional<ProtocolError> GetProtocolError(const absl::Status& status);

}  // namespace ublkgw::nbd

#endif  // UBLKGW_NBD_PROTOCOL_ERROR_H_
