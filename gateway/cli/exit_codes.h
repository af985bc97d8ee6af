// Exit codes of the ublkgw CLI, one per kind of failure a script may want to
// tell apart. Documented in `ublkgw --help` and README.md.
#ifndef UBLKGW_CLI_EXIT_CODES_H_
#define UBLKGW_CLI_EXIT_CODES_H_

#include "absl/status/status.h"

namespace ublkgw::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;          // anything not listed below
inline constexpr int kExitUsage = 2;          // bad command line or argument
inline constexpr int kExitNoUblk = 3;         // a precondition: no ublk driver, TLS required...
inline constexpr int kExitKernelTooOld = 4;   // the driver lacks a needed command
inline constexpr int kExitPermission = 5;     // needs root, or refused by policy
inline constexpr int kExitUnreachable = 6;    // the NBD server cannot be reached or went silent
inline constexpr int kExitNotFound = 7;       // no such export (or device, volume)
inline constexpr int kExitProtocol = 8;       // the NBD server broke the protocol

// The exit code that reports `status` (kExitOk for OK).
int ExitCodeFor(const absl::Status& status);

}  // namespace ublkgw::cli

#endif  // UBLKGW_CLI_EXIT_CODES_H_
