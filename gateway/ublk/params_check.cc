#include "ublk/params_check.h"

#include <bit>

#include "absl/strings/str_cat.h"

namespace ublkgw::ublk {

namespace {

absl::Status Refused(absl::string_view field, uint64_t value, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat("ublk device parameter ", field, " = ", value,
                                                 " would be refused by the kernel: ", rule));
}

}  // namespace

absl::Status CheckParams(const ublk_params& params, uint32_t max_io_buf_bytes,
                         uint32_t page_size) {
  if ((params.types & kParamTypeBasic) == 0) {
    return absl::InvalidArgumentError(
        "ublk device parameters without the basic ones (the kernel requires them)");
  }
  const ublk_param_basic& b = params.basic;
  const int page_shift = std::countr_zero(page_size);
  if (b.logical_bs_shift < 9 || b.logical_bs_shift > page_shift) {
    return Refused("basic.logical_bs_shift", b.logical_bs_shift,
                   absl::StrCat("the logical block must be 512 bytes to a page (", page_size,
                                " bytes)"));
  }
  if (b.logical_bs_shift > b.physical_bs_shift) {
    return Refused("basic.physical_bs_shift", b.physical_bs_shift,
                   "the physical block may not be smaller than the logical block");
  }
  if (b.max_sectors > (max_io_buf_bytes >> 9)) {
    return Refused("basic.max_sectors", b.max_sectors,
                   absl::StrCat("requests may not exceed the device's ", max_io_buf_bytes,
                                "-byte buffers"));
  }
  if ((params.types & kParamTypeDiscard) != 0) {
    const ublk_param_discard& d = params.discard;
    if (d.max_discard_sectors != 0 && d.max_discard_segments != 1) {
      return Refused("discard.max_discard_segments", d.max_discard_segments,
                     "ublk supports discard of one segment only");
    }
    if (d.discard_granularity == 0) {
      return Refused("discard.discard_granularity", 0,
                     "it must be set whenever discard parameters are sent, even for a device "
                     "that only zeroes (max_discard_sectors 0)");
    }
  }
  return absl::OkStatus();
}

}  // namespace ublkgw::ublk
