// Pure translations between ublk and NBD: a ublk I/O descriptor becomes an
// NBD request; an export becomes ublk device parameters; a request's
// identity becomes an NBD cookie and back.
#ifndef UBLKGW_ENGINE_REQUEST_MAPPING_H_
#define UBLKGW_ENGINE_REQUEST_MAPPING_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "nbd/codec.h"
#include "nbd/handshake.h"
#include "ublk/uapi.h"

namespace ublkgw::engine {

// NBD cookie = generation (32 bits) | queue (16) | tag (16). The generation
// changes with every connection, so a late reply from an old connection
// can never complete a request of the new one.
struct CookieParts {
  uint32_t generation;
  uint16_t q_id;
  uint16_t tag;
};
constexpr uint64_t MakeCookie(const CookieParts& p) {
  return uint64_t{p.generation} << 32 | uint64_t{p.q_id} << 16 | p.tag;
}
constexpr CookieParts SplitCookie(uint64_t cookie) {
  return {static_cast<uint32_t>(cookie >> 32), static_cast<uint16_t>(cookie >> 16),
          static_cast<uint16_t>(cookie)};
}

// The NBD request for `iod`, or the -errno to complete it with at once
// (-EOPNOTSUPP for an operation the export does not offer, -EINVAL for one
// ublkgw never enables). The cookie is left 0.
struct MappedRequest {
  nbd::Request request;
  int error = 0;  // non-zero: do not send, complete with this
};
MappedRequest MapRequest(const ublk::ublksrv_io_desc& iod, const nbd::ExportInfo& info);

// The ublk result for a request that succeeded: the bytes of a read or
// write, 0 otherwise.
int32_t SuccessResult(const ublk::ublksrv_io_desc& iod);

// ublk device parameters for `info`: size, block sizes, max_sectors within
// the export's maximum payload and `max_io_bytes`, discard / write-zeroes
// limits below 2^31 when offered, volatile cache and FUA only when the
// server offers FLUSH and FUA, read-only when either side asks for it.
// INVALID_ARGUMENT for an export a block device cannot present (size not a
// multiple of 512 or of its block size, empty, or a minimum block above 4096).
absl::StatusOr<ublk::ublk_params> ParamsForExport(const nbd::ExportInfo& info,
                                                  uint32_t max_io_bytes, bool read_only);

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_REQUEST_MAPPING_H_
