// NBD URIs, after the NBD URI convention (NetworkBlockDevice/nbd doc/uri.md):
//
//   nbd://HOST[:PORT][/EXPORT]            TCP, default port 10809
//   nbds://HOST[:PORT][/EXPORT]           TCP with TLS
//   nbd+unix:///[EXPORT]?socket=PATH      Unix domain socket
//   nbds+unix:///[EXPORT]?socket=PATH     Unix domain socket with TLS
//
// HOST may be a name, an IPv4 address or a bracketed IPv6 literal
// ([::1]). The export name is the path after its first '/',
// percent-decoded; no path, or "/", names the default export "".
#ifndef UBLKGW_NBD_URI_H_
#define UBLKGW_NBD_URI_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ublkgw::nbd {

inline constexpr uint16_t kDefaultPort = 10809;
inline constexpr size_t kMaxUriLength = 4096;
// The NBD protocol limits export names to 4096 bytes.
inline constexpr size_t kMaxExportNameLength = 4096;

struct Uri {
  enum class Transport { kTcp, kUnix };

  Transport transport = Transport::kTcp;
  bool tls = false;
  std::string host;         // kTcp: name or address, without IPv6 brackets
  uint16_t port = kDefaultPort;
  std::string socket_path;  // kUnix
  std::string export_name;

  // The canonical form, e.g. "nbd://[::1]:10809/disk".
  std::string ToString() const;
};

// Parses `text`. Errors are INVALID_ARGUMENT and say what is wrong and what
// was expected, e.g. "unknown scheme 'http' in 'http://x': use nbd://,
// nbds://, nbd+unix:// or nbds+unix://".
absl::StatusOr<Uri> ParseUri(absl::string_view text);

}  // namespace ublkgw::nbd

#endif  // UBLKGW_NBD_URI_H_
