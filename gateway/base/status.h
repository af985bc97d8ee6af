// Error currencies (STYLE.md habit 2): set-up and control code returns
// absl::Status; the data path speaks -errno. These are the only two places
// where one becomes the other.
#ifndef UBLKGW_BASE_STATUS_H_
#define UBLKGW_BASE_STATUS_H_

#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace ublkgw {

// Returns a Status for the positive errno value `err`, with the code that
// matches its meaning (ENOENT -> NOT_FOUND, EACCES -> PERMISSION_DENIED, ...)
// and the message "`context`: strerror(err)". `err` == 0 gives OK.
absl::Status ErrnoToStatus(int err, absl::string_view context);

// Returns the negative errno that best reports `status` to the block layer:
// 0 for OK, -EIO when nothing more precise fits.
int StatusToNegErrno(const absl::Status& status);

}  // namespace ublkgw

#endif  // UBLKGW_BASE_STATUS_H_
