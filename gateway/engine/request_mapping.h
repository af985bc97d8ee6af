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

// NBD cookie = use (48 bits) | tag (16). `use` counts every send of the
// queue, as the kernel's nbd driver counts each command: a tag's next
// request, and the same request sent again on a new connection, each get
// a cookie no earlier send had (for 2^48 sends). So a late, replayed or
// misdirected reply matches no request but the one it answers; the tag
// stays readable from the cookie.
inline constexpr uint64_t kCookieUseMask = (uint64_t{1} << 48) - 1;
constexpr uint64_t MakeCookie(uint64_t use, uint16_t tag) {
  return (use & kCookieUseMask) << 16 | tag;
}
constexpr uint16_t CookieTag(uint64_t cookie) { return static_cast<uint16_t>(cookie); }

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

// The size of each request buffer (ADD_DEV's max_io_buf_bytes) for `info`:
// the server's maximum payload, at most `limit`, in whole pages (the kernel
// rounds down to pages), and at least one page.
uint32_t IoBufferBytes(const nbd::ExportInfo& info, uint32_t page_size, uint32_t limit);

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
