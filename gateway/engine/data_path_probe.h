// Which socket operations on registered (fixed) buffers this kernel really
// performs: tried on a connected socket pair, never guessed from a version.
// The zero-copy data path needs them; the copy path needs none.
#ifndef UBLKGW_ENGINE_DATA_PATH_PROBE_H_
#define UBLKGW_ENGINE_DATA_PATH_PROBE_H_

#include <string>

#include "absl/status/statusor.h"

namespace ublkgw::engine {

struct FixedBufferSupport {
  bool send = false;     // IORING_OP_SEND with IORING_RECVSEND_FIXED_BUF
  bool send_zc = false;  // IORING_OP_SEND_ZC with IORING_RECVSEND_FIXED_BUF
  bool recv = false;     // IORING_OP_RECV with IORING_RECVSEND_FIXED_BUF
  bool write_fixed = false;  // IORING_OP_WRITE_FIXED on the socket
  bool read_fixed = false;   // IORING_OP_READ_FIXED on the socket
  // io_uring offers IORING_OP_FUSED_CMD (kernels carrying ublkgw's
  // kernel/patches): from its opcode probe, not tried.
  bool fused_cmd = false;
  // One line per operation: what was tried and what the kernel answered.
  std::string detail;
};

// Tries each operation once on a connected pair of `family` sockets
// (AF_INET over loopback, AF_INET6 over loopback, or AF_UNIX), with a
// registered buffer whose user mapping is made inaccessible first: only a
// kernel that really uses the registered pages can succeed, one that
// ignored the flag faults. An error only when the probe itself cannot run
// (no io_uring, no loopback).
absl::StatusOr<FixedBufferSupport> ProbeFixedBuffers(int family);

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_DATA_PATH_PROBE_H_
