// Whole-file reads for configuration-sized files (state records, PEM
// certificates): not for the data path.
#ifndef UBLKGW_BASE_FILE_H_
#define UBLKGW_BASE_FILE_H_

#include <string>

#include "absl/status/statusor.h"

namespace ublkgw {

// The contents of `path`. Errors as ErrnoToStatus gives them, naming the
// path ("PATH: No such file or directory"): NOT_FOUND when it does not
// exist, PERMISSION_DENIED, ...
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace ublkgw

#endif  // UBLKGW_BASE_FILE_H_
