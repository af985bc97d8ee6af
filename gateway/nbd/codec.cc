#include "nbd/codec.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "nbd/bytes.h"
#include "nbd/protocol_error.h"
#include "nbd/wire.h"

namespace ublkgw::nbd {

namespace {

// Prefix sizes of the chunk payloads (before data or message).
constexpr size_t kHolePrefix = 12;        // u64 offset, u32 size (also with extended headers)
constexpr size_t kErrorPrefix = 6;        // u32 error, u16 message length
constexpr size_t kErrorOffsetTrailer = 8;  // u64 offset, after the message

bool IsErrorType(uint16_t type) { return type & kReplyTypeErrorBit; }

std::string Describe(const Request& r) {
  return absl::StrCat("request type ", r.type, " cookie 0x", absl::Hex(r.cookie), " [", r.offset,
                      ", +", r.length, ")");
}

// Whether [offset, offset + length) lies inside the request's range,
// without overflowing.
bool InsideRequest(uint64_t offset, uint64_t length, const Request& request) {
  if (offset < request.offset) return false;
  const uint64_t start = offset - request.offset;
  return start <= request.length && length <= request.length - start;
}

}  // namespace

size_t RequestHeaderSize(HeaderMode mode) {
  return mode == HeaderMode::kExtended ? kExtendedRequestSize : kRequestSize;
}

absl::StatusOr<size_t> EncodeRequest(const Request& request, HeaderMode mode,
                                     std::span<uint8_t> out) {
  const size_t size = RequestHeaderSize(mode);
  if (out.size() < size) {
    return absl::InvalidArgumentError(
        absl::StrCat("request buffer of ", out.size(), " bytes; need ", size));
  }
  const bool extended = mode == HeaderMode::kExtended;
  if (!extended && request.length > UINT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("length ", request.length, " does not fit a compact request"));
  }
  uint8_t* p = out.data();
  StoreBe<uint32_t>(p, extended ? kExtendedRequestMagic : kRequestMagic);
  StoreBe<uint16_t>(p + 4, request.flags);
  StoreBe<uint16_t>(p + 6, request.type);
  StoreBe<uint64_t>(p + 8, request.cookie);
  StoreBe<uint64_t>(p + 16, request.offset);
  if (extended) {
    StoreBe<uint64_t>(p + 24, request.length);
  } else {
    StoreBe<uint32_t>(p + 24, static_cast<uint32_t>(request.length));
  }
  return size;
}

absl::StatusOr<size_t> ReplyHeaderSize(uint32_t magic, HeaderMode mode) {
  switch (mode) {
    case HeaderMode::kSimple:
      if (magic == kSimpleReplyMagic) return kSimpleReplySize;
      break;
    case HeaderMode::kStructured:
      if (magic == kSimpleReplyMagic) return kSimpleReplySize;
      if (magic == kStructuredReplyMagic) return kStructuredReplySize;
      break;
    case HeaderMode::kExtended:
      // Once extended headers are negotiated, every reply uses them.
      if (magic == kExtendedReplyMagic) return kExtendedReplySize;
      break;
  }
  return ProtocolViolation(ProtocolError::kBadMagic,
                           absl::StrCat("reply magic 0x", absl::Hex(magic, absl::kZeroPad8),
                                        " is not valid for the negotiated headers"));
}

absl::StatusOr<ReplyHeader> DecodeReplyHeader(std::span<const uint8_t> bytes, HeaderMode mode) {
  if (bytes.size() < kReplyMagicSize) {
    return ProtocolViolation(ProtocolError::kTruncated, "reply shorter than its magic");
  }
  const uint32_t magic = LoadBe<uint32_t>(bytes.data());
  auto size = ReplyHeaderSize(magic, mode);
  if (!size.ok()) return size.status();
  if (bytes.size() != *size) {
    return ProtocolViolation(ProtocolError::kTruncated,
                             absl::StrCat("reply header of ", bytes.size(), " bytes; expected ", *size));
  }
  const uint8_t* p = bytes.data();
  ReplyHeader h;
  if (magic == kSimpleReplyMagic) {
    h.error = LoadBe<uint32_t>(p + 4);
    h.cookie = LoadBe<uint64_t>(p + 8);
    return h;
  }
  h.structured = true;
  h.flags = LoadBe<uint16_t>(p + 4);
  h.type = LoadBe<uint16_t>(p + 6);
  h.cookie = LoadBe<uint64_t>(p + 8);
  // Extended headers also echo an offset at p + 16, which we do not trust
  // for anything: chunk payloads carry their own offsets.
  h.length = magic == kExtendedReplyMagic ? LoadBe<uint64_t>(p + 24) : LoadBe<uint32_t>(p + 16);
  return h;
}

absl::Status CheckSimpleReply(const ReplyHeader& header, const Request& request, HeaderMode mode) {
  if (!header.structured && mode != HeaderMode::kSimple && request.type == kCmdRead) {
    return ProtocolViolation(ProtocolError::kUnexpectedChunk,
                             absl::StrCat("simple reply to a read after structured replies were "
                                          "negotiated, for ", Describe(request)));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> ChunkPrefixSize(const ReplyHeader& header, const Request& request,
                                       HeaderMode /*mode*/) {
  const uint64_t len = header.length;
  switch (header.type) {
    case kReplyTypeNone:
      if (!header.done()) {
        return ProtocolViolation(ProtocolError::kUnexpectedChunk,
                                 absl::StrCat("NONE chunk without the DONE flag for ", Describe(request)));
      }
      if (len != 0) {
        return ProtocolViolation(ProtocolError::kOversizedLength,
                                 absl::StrCat("NONE chunk with a ", len, "-byte payload"));
      }
      return 0;
    case kReplyTypeOffsetData:
      if (request.type != kCmdRead) {
        return ProtocolViolation(ProtocolError::kUnexpectedChunk,
                                 absl::StrCat("data chunk for ", Describe(request)));
      }
      if (len <= kDataChunkPrefixSize) {
        return ProtocolViolation(ProtocolError::kTruncated,
                                 absl::StrCat("data chunk of ", len, " bytes carries no data"));
      }
      if (len - kDataChunkPrefixSize > request.length) {
        return ProtocolViolation(ProtocolError::kOversizedLength,
                                 absl::StrCat("data chunk of ", len - kDataChunkPrefixSize,
                                              " bytes for ", Describe(request)));
      }
      return kDataChunkPrefixSize;
    case kReplyTypeOffsetHole: {
      if (request.type != kCmdRead) {
        return ProtocolViolation(ProtocolError::kUnexpectedChunk,
                                 absl::StrCat("hole chunk for ", Describe(request)));
      }
      const size_t want = kHolePrefix;
      if (len != want) {
        return ProtocolViolation(len < want ? ProtocolError::kTruncated : ProtocolError::kOversizedLength,
                                 absl::StrCat("hole chunk of ", len, " bytes; expected ", want));
      }
      return want;
    }
    default:
      break;
  }
  if (!IsErrorType(header.type)) {
    // BLOCK_STATUS answers only NBD_CMD_BLOCK_STATUS, which we never send;
    // other types were never negotiated.
    return ProtocolViolation(ProtocolError::kUnexpectedChunk,
                             absl::StrCat("chunk type ", header.type, " for ", Describe(request)));
  }
  const size_t min = header.type == kReplyTypeErrorOffset ? kErrorPrefix + kErrorOffsetTrailer
                                                          : kErrorPrefix;
  if (len < min) {
    return ProtocolViolation(ProtocolError::kBadErrorChunk,
                             absl::StrCat("error chunk of ", len, " bytes; at least ", min, " needed"));
  }
  if (len > min + kMaxStringLength) {
    return ProtocolViolation(ProtocolError::kOversizedLength,
                             absl::StrCat("error chunk of ", len, " bytes"));
  }
  return kErrorPrefix;
}

absl::StatusOr<Chunk> DecodeChunk(const ReplyHeader& header, std::span<const uint8_t> prefix,
                                  const Request& request, HeaderMode mode) {
  auto want = ChunkPrefixSize(header, request, mode);
  if (!want.ok()) return want.status();
  if (prefix.size() != *want) {
    return ProtocolViolation(ProtocolError::kTruncated,
                             absl::StrCat("chunk prefix of ", prefix.size(), " bytes; expected ", *want));
  }
  const uint8_t* p = prefix.data();
  Chunk c;
  switch (header.type) {
    case kReplyTypeNone:
      c.kind = Chunk::Kind::kNone;
      return c;
    case kReplyTypeOffsetData:
    case kReplyTypeOffsetHole:
      c.offset = LoadBe<uint64_t>(p);
      if (header.type == kReplyTypeOffsetData) {
        c.kind = Chunk::Kind::kData;
        c.length = header.length - kDataChunkPrefixSize;
      } else {
        c.kind = Chunk::Kind::kHole;
        c.length = LoadBe<uint32_t>(p + 8);
        if (c.length == 0) {
          return ProtocolViolation(ProtocolError::kChunkOutOfRange, "hole chunk of 0 bytes");
        }
      }
      if (!InsideRequest(c.offset, c.length, request)) {
        return ProtocolViolation(ProtocolError::kChunkOutOfRange,
                                 absl::StrCat(header.type == kReplyTypeOffsetData ? "data" : "hole",
                                              " chunk [", c.offset, ", +", c.length, ") outside ",
                                              Describe(request)));
      }
      return c;
    default:
      break;
  }
  c.kind = Chunk::Kind::kError;
  c.error = LoadBe<uint32_t>(p);
  c.message_length = LoadBe<uint16_t>(p + 4);
  if (c.error == 0) {
    return ProtocolViolation(ProtocolError::kBadErrorChunk, "error chunk with error 0");
  }
  const uint64_t after_prefix = header.length - kErrorPrefix;
  if (c.message_length > after_prefix || c.message_length > kMaxStringLength) {
    return ProtocolViolation(ProtocolError::kBadErrorChunk,
                             absl::StrCat("error message of ", c.message_length, " bytes in a ",
                                          header.length, "-byte chunk"));
  }
  const uint64_t trailer = after_prefix - c.message_length;
  if (header.type == kReplyTypeError && trailer != 0) {
    return ProtocolViolation(ProtocolError::kBadErrorChunk,
                             absl::StrCat(trailer, " bytes after the error message"));
  }
  if (header.type == kReplyTypeErrorOffset && trailer != kErrorOffsetTrailer) {
    return ProtocolViolation(ProtocolError::kBadErrorChunk,
                             absl::StrCat("ERROR_OFFSET chunk with ", trailer,
                                          " bytes after the message; expected 8"));
  }
  // Unknown error types: the rest of the payload is skipped.
  c.trailer_length = static_cast<uint32_t>(trailer);
  return c;
}

absl::Status CheckErrorOffset(std::span<const uint8_t> trailer, const Request& request) {
  if (trailer.size() != kErrorOffsetTrailer) {
    return ProtocolViolation(ProtocolError::kTruncated, "ERROR_OFFSET trailer");
  }
  const uint64_t offset = LoadBe<uint64_t>(trailer.data());
  if (!InsideRequest(offset, 1, request)) {
    return ProtocolViolation(ProtocolError::kChunkOutOfRange,
                             absl::StrCat("error offset ", offset, " outside ", Describe(request)));
  }
  return absl::OkStatus();
}

absl::Status ReadCoverage::Add(uint64_t offset, uint64_t length) {
  if (offset > length_ || length > length_ - offset) {
    return ProtocolViolation(ProtocolError::kChunkOutOfRange,
                             absl::StrCat("chunk [", offset, ", +", length, ") outside a read of ",
                                          length_, " bytes"));
  }
  if (length == 0) return absl::OkStatus();
  const uint64_t end = offset + length;
  if (ranges_.empty()) {
    if (run_end_ == run_begin_) {  // the first piece
      run_begin_ = offset;
      run_end_ = end;
    } else if (offset == run_end_) {
      run_end_ = end;
    } else if (end == run_begin_) {
      run_begin_ = offset;
    } else if (offset < run_end_ && end > run_begin_) {
      return ProtocolViolation(ProtocolError::kChunkOverlap,
                               absl::StrCat("chunk [", offset, ", +", length, ") overlaps [",
                                            run_begin_, ", ", run_end_, ") of the same read"));
    } else {
      ranges_.emplace(run_begin_, run_end_);
      return AddToRanges(offset, length);
    }
    covered_ += length;
    return absl::OkStatus();
  }
  return AddToRanges(offset, length);
}

absl::Status ReadCoverage::AddToRanges(uint64_t offset, uint64_t length) {
  const uint64_t end = offset + length;
  // `next` is the first range starting after `offset`; the one before it
  // is the only one that can reach into [offset, end) from the left.
  auto next = ranges_.upper_bound(offset);
  auto prev = next == ranges_.begin() ? ranges_.end() : std::prev(next);
  const bool left_overlap = prev != ranges_.end() && prev->second > offset;
  const bool right_overlap = next != ranges_.end() && next->first < end;
  if (left_overlap || right_overlap) {
    const auto& hit = left_overlap ? *prev : *next;
    return ProtocolViolation(ProtocolError::kChunkOverlap,
                             absl::StrCat("chunk [", offset, ", +", length, ") overlaps [",
                                          hit.first, ", ", hit.second, ") of the same read"));
  }
  const bool joins_prev = prev != ranges_.end() && prev->second == offset;
  const bool joins_next = next != ranges_.end() && next->first == end;
  if (joins_prev && joins_next) {
    prev->second = next->second;
    ranges_.erase(next);
  } else if (joins_prev) {
    prev->second = end;
  } else if (joins_next) {
    const uint64_t next_end = next->second;
    ranges_.erase(next);
    ranges_.emplace(offset, next_end);
  } else {
    if (ranges_.size() >= kMaxFragments) {
      return ProtocolViolation(
          ProtocolError::kTooFragmented,
          absl::StrCat("a read of ", length_, " bytes sent in more than ", kMaxFragments,
                       " separate pieces"));
    }
    ranges_.emplace(offset, end);
  }
  covered_ += length;
  return absl::OkStatus();
}

}  // namespace ublkgw::nbd
