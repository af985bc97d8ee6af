#include "nbd/request_rules.h"

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "nbd/wire.h"

namespace ublkgw::nbd {

namespace {

absl::Status NotOffered(const Request& r, const char* what) {
  return absl::UnimplementedError(
      absl::StrCat(CommandName(r.type), ": the export does not offer ", what));
}

}  // namespace

absl::Status ValidateRequest(const Request& r, const ExportInfo& info) {
  const uint16_t known_flags = kCmdFlagFua | kCmdFlagNoHole | kCmdFlagFastZero;
  if (r.flags & ~known_flags) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported command flags 0x", absl::Hex(r.flags)));
  }
  if ((r.flags & kCmdFlagFua) && !info.can(kFlagSendFua)) return NotOffered(r, "FUA");
  if ((r.flags & (kCmdFlagNoHole | kCmdFlagFastZero)) && r.type != kCmdWriteZeroes) {
    return absl::InvalidArgumentError(absl::StrCat(CommandName(r.type), " takes no NO_HOLE/FAST_ZERO"));
  }
  if ((r.flags & kCmdFlagFastZero) && !info.can(kFlagSendFastZero)) return NotOffered(r, "FAST_ZERO");

  switch (r.type) {
    case kCmdDisc:
      return absl::OkStatus();
    case kCmdFlush:
      if (!info.can(kFlagSendFlush)) return NotOffered(r, "FLUSH");
      if (r.offset != 0 || r.length != 0) {
        return absl::InvalidArgumentError("FLUSH takes offset 0 and length 0");
      }
      return absl::OkStatus();
    case kCmdRead:
      break;
    case kCmdWrite:
    case kCmdTrim:
    case kCmdWriteZeroes:
      if (info.read_only()) {
        return absl::FailedPreconditionError(
            absl::StrCat(CommandName(r.type), ": the export is read-only"));
      }
      if (r.type == kCmdTrim && !info.can(kFlagSendTrim)) return NotOffered(r, "TRIM");
      if (r.type == kCmdWriteZeroes && !info.can(kFlagSendWriteZeroes)) {
        return NotOffered(r, "WRITE_ZEROES");
      }
      break;
    case kCmdCache:
      if (!info.can(kFlagSendCache)) return NotOffered(r, "CACHE");
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unsupported command ", r.type));
  }

  if (r.length == 0) {
    return absl::InvalidArgumentError(absl::StrCat(CommandName(r.type), " of 0 bytes"));
  }
  if (r.offset > info.size || r.length > info.size - r.offset) {
    return absl::InvalidArgumentError(absl::StrCat(CommandName(r.type), " [", r.offset, ", +",
                                                   r.length, ") past the end of the ", info.size,
                                                   "-byte export"));
  }
  if (r.offset % info.min_block != 0 || r.length % info.min_block != 0) {
    return absl::InvalidArgumentError(absl::StrCat(CommandName(r.type), " [", r.offset, ", +",
                                                   r.length, ") is not aligned to the export's ",
                                                   info.min_block, "-byte minimum block"));
  }
  const bool payload = r.type == kCmdRead || r.type == kCmdWrite;
  const uint64_t limit = payload ? info.max_payload : kMaxZeroOrTrimLength;
  if (r.length > limit) {
    return absl::InvalidArgumentError(absl::StrCat(CommandName(r.type), " of ", r.length,
                                                   " bytes exceeds the limit of ", limit));
  }
  return absl::OkStatus();
}

int NbdErrorToNegErrno(uint32_t nbd_error) {
  switch (nbd_error) {
    case 0: return 0;
    case kEPerm: return -EPERM;
    case kEIo: return -EIO;
    case kENoMem: return -ENOMEM;
    case kEInval: return -EINVAL;
    case kENoSpc: return -ENOSPC;
    case kEOverflow: return -EOVERFLOW;
    case kENotSup: return -EOPNOTSUPP;
    case kEShutdown: return -ESHUTDOWN;
    default: return -EINVAL;
  }
}

}  // namespace ublkgw::nbd
