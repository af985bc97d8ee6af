// The rules the ublk driver applies to UBLK_U_CMD_SET_PARAMS
// (ublk_validate_params in drivers/block/ublk_drv.c, Linux 6.0-7.2), so a
// device is never given parameters the kernel refuses with a bare EINVAL,
// and a refusal says which parameter and why.
#ifndef UBLKGW_UBLK_PARAMS_CHECK_H_
#define UBLKGW_UBLK_PARAMS_CHECK_H_

#include <cstdint>

#include "absl/status/status.h"
#include "ublk/uapi.h"

namespace ublkgw::ublk {

// OK if the driver accepts `params` for a device whose buffers are
// `max_io_buf_bytes` long (ADD_DEV's max_io_buf_bytes) on a system with
// `page_size` pages; otherwise INVALID_ARGUMENT naming the field, its
// value, and the rule it breaks.
absl::Status CheckParams(const ublk_params& params, uint32_t max_io_buf_bytes,
                         uint32_t page_size);

}  // namespace ublkgw::ublk

#endif  // UBLKGW_UBLK_PARAMS_CHECK_H_
