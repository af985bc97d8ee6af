#include "engine/request_mapping.h"

#include <algorithm>
#include <bit>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "nbd/request_rules.h"
#include "nbd/wire.h"

namespace ublkgw::engine {

using ublk::IodOp;

MappedRequest MapRequest(const ublk::ublksrv_io_desc& iod, const nbd::ExportInfo& info) {
  MappedRequest out;
  nbd::Request& r = out.request;
  r.offset = iod.start_sector << 9;
  r.length = uint64_t{iod.nr_sectors} << 9;
  const bool fua = iod.op_flags & ublk::kIoFFua;
  switch (IodOp(iod)) {
    case ublk::kIoOpRead:
      r.type = nbd::kCmdRead;
      break;
    case ublk::kIoOpWrite:
      r.type = nbd::kCmdWrite;
      break;
    case ublk::kIoOpFlush:
      r.type = nbd::kCmdFlush;
      r.offset = 0;
      r.length = 0;
      break;
    case ublk::kIoOpDiscard:
      r.type = nbd::kCmdTrim;
      break;
    case ublk::kIoOpWriteZeroes:
      r.type = nbd::kCmdWriteZeroes;
      // NOUNMAP: the zeroed range must stay allocated.
      if (iod.op_flags & ublk::kIoFNoUnmap) r.flags |= nbd::kCmdFlagNoHole;
      break;
    default:
      out.error = -EOPNOTSUPP;
      return out;
  }
  if (fua && r.type != nbd::kCmdRead && r.type != nbd::kCmdFlush) r.flags |= nbd::kCmdFlagFua;
  if (absl::Status s = nbd::ValidateRequest(r, info); !s.ok()) {
    out.error = absl::IsUnimplemented(s) ? -EOPNOTSUPP
                : absl::IsFailedPrecondition(s) ? -EROFS
                                                : -EINVAL;
  }
  return out;
}

int32_t SuccessResult(const ublk::ublksrv_io_desc& iod) {
  const uint8_t op = IodOp(iod);
  return op == ublk::kIoOpRead || op == ublk::kIoOpWrite ? static_cast<int32_t>(iod.nr_sectors << 9)
                                                         : 0;
}

uint32_t IoBufferBytes(const nbd::ExportInfo& info, uint32_t page_size, uint32_t limit) {
  return std::max(page_size, std::min(limit, info.max_payload) / page_size * page_size);
}

absl::StatusOr<ublk::ublk_params> ParamsForExport(const nbd::ExportInfo& info,
                                                  uint32_t max_io_bytes, bool read_only) {
  // A block device has at least 512-byte sectors; ublk allows logical
  // blocks up to a page.
  const uint32_t logical = std::max<uint32_t>(info.min_block, 512);
  if (logical > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the export's minimum block size is ", info.min_block, " bytes; at most 4096 is supported"));
  }
  if (info.size == 0) return absl::InvalidArgumentError("the export is empty (0 bytes)");
  if (info.size % logical != 0) {
    return absl::InvalidArgumentError(absl::StrCat("the export's size, ", info.size,
                                                   " bytes, is not a multiple of its ", logical,
                                                   "-byte blocks"));
  }
  ublk::ublk_params p{};
  p.types = ublk::kParamTypeBasic;
  auto& b = p.basic;
  b.logical_bs_shift = static_cast<uint8_t>(std::countr_zero(logical));
  const uint32_t physical = std::clamp<uint32_t>(info.preferred_block, logical, 4096);
  b.physical_bs_shift = static_cast<uint8_t>(std::countr_zero(std::bit_floor(physical)));
  b.io_min_shift = b.logical_bs_shift;
  b.io_opt_shift = b.physical_bs_shift;
  // Requests stay within the server's maximum payload and our buffers, in
  // whole logical blocks.
  const uint32_t max_bytes = std::min(info.max_payload, max_io_bytes) / logical * logical;
  b.max_sectors = max_bytes >> 9;
  b.dev_sectors = info.size >> 9;
  if (read_only || info.read_only()) b.attrs |= ublk::kAttrReadOnly;
  if (info.can(nbd::kFlagRotational)) b.attrs |= ublk::kAttrRotational;
  if (info.can(nbd::kFlagSendFlush)) {
    b.attrs |= ublk::kAttrVolatileCache;
    if (info.can(nbd::kFlagSendFua)) b.attrs |= ublk::kAttrFua;
  }

  const bool trim = info.can(nbd::kFlagSendTrim);
  const bool zeroes = info.can(nbd::kFlagSendWriteZeroes);
  if ((trim || zeroes) && !(b.attrs & ublk::kAttrReadOnly)) {
    p.types |= ublk::kParamTypeDiscard;
    // Below 2^31 bytes, in whole logical blocks (nbd/request_rules.h).
    const uint32_t limit = static_cast<uint32_t>(nbd::kMaxZeroOrTrimLength / logical * logical) >> 9;
    // The kernel refuses discard parameters without a granularity, even
    // when only WRITE_ZEROES is offered (max_discard_sectors 0): it clears
    // the granularity itself then.
    p.discard.discard_granularity = std::max<uint32_t>(info.preferred_block, logical);
    p.discard.max_discard_sectors = trim ? limit : 0;
    p.discard.max_discard_segments = trim ? 1 : 0;
    p.discard.max_write_zeroes_sectors = zeroes ? limit : 0;
  }
  return p;
}

}  // namespace ublkgw::engine
