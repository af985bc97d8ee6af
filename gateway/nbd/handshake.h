// The NBD handshake (fixed newstyle), separate from transmission: it
// negotiates headers and one export over a connected Stream, or lists the
// server's exports. Every byte from the server is validated; a violation is
// a kBadHandshake protocol error, an option refusal becomes a status whose
// code and message say what the server meant (NOT_FOUND for an unknown
// export, FAILED_PRECONDITION when TLS is required, ...).
#ifndef UBLKGW_NBD_HANDSHAKE_H_
#define UBLKGW_NBD_HANDSHAKE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nbd/codec.h"
#include "nbd/stream.h"

namespace ublkgw::nbd {

struct HandshakeOptions {
  std::string export_name;
  bool structured_replies = true;
  bool extended_headers = true;
};

// What was negotiated for one export.
struct ExportInfo {
  std::string export_name;     // as asked for
  std::string canonical_name;  // NBD_INFO_NAME, if the server sent it
  std::string description;     // NBD_INFO_DESCRIPTION, if sent
  uint64_t size = 0;
  uint16_t flags = 0;  // transmission flags (kFlag*)
  // Block sizes: the server's (block_sizes_from_server), else the
  // interoperable defaults (512, 4096, 32 MiB). Requests obey them.
  bool block_sizes_from_server = false;
  uint32_t min_block = 512;
  uint32_t preferred_block = 4096;
  uint32_t max_payload = 32 * 1024 * 1024;
  HeaderMode mode = HeaderMode::kSimple;
  bool no_zeroes = false;
  bool used_opt_go = true;  // false: fell back to NBD_OPT_EXPORT_NAME

  bool read_only() const;
  bool can(uint16_t flag) const { return (flags & flag) != 0; }
};

// Greets the server and negotiates `options.export_name`. On success the
// stream is in the transmission phase.
absl::StatusOr<ExportInfo> Negotiate(Stream& stream, const HandshakeOptions& options);

struct ExportListEntry {
  std::string name;
  std::string description;
};

// Greets the server, lists its exports (NBD_OPT_LIST) and ends the
// handshake with NBD_OPT_ABORT.
absl::StatusOr<std::vector<ExportListEntry>> ListExports(Stream& stream);

// Names of the transmission flags set in `flags`, e.g. {"READ_ONLY",
// "SEND_FLUSH"}; unknown bits as "BIT_13".
std::vector<std::string> TransmissionFlagNames(uint16_t flags);

}  // namespace ublkgw::nbd

#endif  // UBLKGW_NBD_HANDSHAKE_H_
