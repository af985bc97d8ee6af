// The NBD transmission phase as pure functions over bytes: encode request
// headers, decode reply headers and structured-reply chunk prefixes, and
// validate every field from the server against the request it answers.
// No I/O, no allocation on the hot path; fuzzed (tests/fuzz/).
//
// A reply is read in up to three steps, so data can be received straight
// into its final place:
//   1. the header (its size follows from the magic: ReplyHeaderSize);
//   2. for a structured chunk, its fixed prefix (ChunkPrefixSize), which
//      DecodeChunk turns into "N data bytes for offset X", "a hole",
//      "an error with a message of M bytes", ...;
//   3. the data or message itself, read by the caller.
#ifndef UBLKGW_NBD_CODEC_H_
#define UBLKGW_NBD_CODEC_H_

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace ublkgw::nbd {

// What the handshake negotiated for headers.
enum class HeaderMode {
  kSimple,      // 28-byte requests; simple replies only
  kStructured,  // 28-byte requests; simple replies or structured chunks
  kExtended,    // 32-byte requests; extended reply headers only
};

struct Request {
  uint16_t type = 0;   // kCmd*
  uint16_t flags = 0;  // kCmdFlag*
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};

size_t RequestHeaderSize(HeaderMode mode);

// Writes the header of `request` to `out` (at least RequestHeaderSize
// bytes) and returns its size. INVALID_ARGUMENT if `out` is too small or the
// length does not fit the mode's 32-bit field.
absl::StatusOr<size_t> EncodeRequest(const Request& request, HeaderMode mode,
                                     std::span<uint8_t> out);

// Every reply starts with a 4-byte magic that says how long its header is.
inline constexpr size_t kReplyMagicSize = 4;
// The header size for `magic` (the first 4 bytes, big-endian), or
// kBadMagic if that magic may not appear in `mode`.
absl::StatusOr<size_t> ReplyHeaderSize(uint32_t magic, HeaderMode mode);

struct ReplyHeader {
  bool structured = false;  // false: a simple reply
  uint64_t cookie = 0;
  uint32_t error = 0;       // simple reply: NBD error (0 = success)
  uint16_t flags = 0;       // chunk: kReplyFlagDone
  uint16_t type = 0;        // chunk: kReplyType*
  uint64_t length = 0;      // chunk: payload length

  bool done() const { return !structured || (flags & 1); }
};

// Decodes a whole header (`bytes` is exactly ReplyHeaderSize long).
absl::StatusOr<ReplyHeader> DecodeReplyHeader(std::span<const uint8_t> bytes, HeaderMode mode);

// With structured replies (or extended headers), a READ never gets a simple
// reply: kUnexpectedChunk if it does.
absl::Status CheckSimpleReply(const ReplyHeader& header, const Request& request, HeaderMode mode);

// What one chunk says, once its prefix is decoded and validated.
struct Chunk {
  enum class Kind { kNone, kData, kHole, kError };
  Kind kind = Kind::kNone;
  uint64_t offset = 0;          // kData/kHole: export offset; kError: 0
  uint64_t length = 0;          // kData: bytes that follow; kHole: zero bytes
  uint32_t error = 0;           // kError: NBD error, never 0
  uint32_t message_length = 0;  // kError: message bytes that follow the prefix
  uint32_t trailer_length = 0;  // kError: bytes after the message (ERROR_OFFSET: 8)
};

// The size of the fixed prefix of `header`'s payload, validated against the
// `request` it answers: kUnexpectedChunk for a chunk type the request may
// not get, kTruncated / kOversizedLength for lengths that cannot be right.
absl::StatusOr<size_t> ChunkPrefixSize(const ReplyHeader& header, const Request& request,
                                       HeaderMode mode);

// Decodes the prefix of `header`'s payload (exactly ChunkPrefixSize
// bytes) and checks it against `request`: data and holes lie inside it,
// error chunks carry a non-zero error and a message that fits.
absl::StatusOr<Chunk> DecodeChunk(const ReplyHeader& header, std::span<const uint8_t> prefix,
                                  const Request& request, HeaderMode mode);

// For ERROR_OFFSET chunks: checks the offset in the trailer lies inside
// `request`.
absl::Status CheckErrorOffset(std::span<const uint8_t> trailer, const Request& request);

// Which bytes of one read have arrived, across its chunks. Rejects overlaps
// (kChunkOverlap); at the end tells whether every byte was covered.
// Adjacent pieces merge, so chunks sent in order (what servers do) keep one
// range, held inline: no allocation on the hot path. Chunks out of order
// cost O(log n) each. At most kMaxFragments disjoint pieces are tracked
// (kTooFragmented past that), so a hostile server's tiny chunks cost
// neither quadratic time nor unbounded memory.
class ReadCoverage {
 public:
  static constexpr size_t kMaxFragments = 1024;

  explicit ReadCoverage(uint64_t length) : length_(length) {}

  // Records [offset, offset + length) relative to the request's start.
  absl::Status Add(uint64_t offset, uint64_t length);
  bool complete() const { return covered_ == length_; }

 private:
  // A second piece that neither touches nor overlaps the first: from here
  // on every range lives in ranges_.
  absl::Status AddToRanges(uint64_t offset, uint64_t length);

  uint64_t length_;
  uint64_t covered_ = 0;
  // While ranges_ is empty, what has arrived is one range [run_begin_,
  // run_end_) (empty before the first piece).
  uint64_t run_begin_ = 0;
  uint64_t run_end_ = 0;
  std::map<uint64_t, uint64_t> ranges_;  // begin -> end, disjoint, never adjacent
};

}  // namespace ublkgw::nbd

#endif  // UBLKGW_NBD_CODEC_H_
