// What a client may ask of an export, and what the server's errors mean.
// Pure; shared by the blocking client and the queue workers, so no request
// the export's flags or limits forbid ever reaches the wire.
#ifndef UBLKGW_NBD_REQUEST_RULES_H_
#define UBLKGW_NBD_REQUEST_RULES_H_

#include <cstdint>

#include "absl/status/status.h"
#include "nbd/codec.h"
#include "nbd/handshake.h"

namespace ublkgw::nbd {

// TRIM and WRITE_ZEROES lengths stay below 2^31 (servers differ in what
// they accept beyond; the kernel never needs more at once).
inline constexpr uint64_t kMaxZeroOrTrimLength = (1ULL << 31) - 1;

// OK if `request` may be sent to the export `info` describes:
//   FAILED_PRECONDITION  a write, trim or zero to a read-only export
//   UNIMPLEMENTED        a command or flag the export does not offer
//   INVALID_ARGUMENT     out of range, misaligned to the minimum block,
//                        empty, or longer than the export's limits
absl::Status ValidateRequest(const Request& request, const ExportInfo& info);

// The negative errno for an NBD error number (unknown ones: -EINVAL, as
// the spec says).
int NbdErrorToNegErrno(uint32_t nbd_error);

}  // namespace ublkgw::nbd

#endif  // UBLKGW_NBD_REQUEST_RULES_H_
