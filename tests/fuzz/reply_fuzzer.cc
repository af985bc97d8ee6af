// libFuzzer harness for the NBD reply decoder: the input picks a header
// mode and a request, and the rest is what a server sends back. The loop
// is the client's: header, chunk prefix, data placed by offset into the
// request's buffer. Anything the codec accepts must stay inside the buffer
// (ASan checks), and a read said complete must have been fully covered.
#include <cstdint>
#include <cstring>
#include <vector>

#include "nbd/bytes.h"
#include "nbd/codec.h"
#include "nbd/wire.h"

namespace {

using namespace ublkgw::nbd;

struct Input {
  const uint8_t* p;
  size_t left;
  bool Take(size_t n, const uint8_t** out) {
    if (n > left) return false;
    *out = p;
    p += n;
    left -= n;
    return true;
  }
};

constexpr uint16_t kCommands[] = {kCmdRead, kCmdWrite, kCmdFlush, kCmdTrim, kCmdWriteZeroes, kCmdCache};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const HeaderMode mode = static_cast<HeaderMode>(data[0] % 3);
  Request request;
  request.type = kCommands[data[1] % std::size(kCommands)];
  request.cookie = 1;
  request.offset = 1 << 20;
  request.length = (1 + LoadBe<uint16_t>(data + 2) % 256) * 512;
  Input in{data + 4, size - 4};

  std::vector<uint8_t> buffer(request.type == kCmdRead ? request.length : 0);
  ReadCoverage coverage(buffer.size());
  for (;;) {
    const uint8_t* magic;
    if (!in.Take(kReplyMagicSize, &magic)) return 0;
    auto header_size = ReplyHeaderSize(LoadBe<uint32_t>(magic), mode);
    if (!header_size.ok()) return 0;
    const uint8_t* rest;
    if (!in.Take(*header_size - kReplyMagicSize, &rest)) return 0;
    uint8_t header_bytes[kExtendedReplySize];
    std::memcpy(header_bytes, magic, kReplyMagicSize);
    std::memcpy(header_bytes + kReplyMagicSize, rest, *header_size - kReplyMagicSize);
    auto header = DecodeReplyHeader({header_bytes, *header_size}, mode);
    if (!header.ok() || header->cookie != request.cookie) return 0;
    if (!header->structured) {
      if (!CheckSimpleReply(*header, request, mode).ok()) return 0;
      if (header->error == 0 && request.type == kCmdRead) {
        const uint8_t* payload;
        if (!in.Take(buffer.size(), &payload)) return 0;
        std::memcpy(buffer.data(), payload, buffer.size());
      }
      return 0;
    }
    auto prefix_size = ChunkPrefixSize(*header, request, mode);
    if (!prefix_size.ok()) return 0;
    const uint8_t* prefix;
    if (!in.Take(*prefix_size, &prefix)) return 0;
    auto chunk = DecodeChunk(*header, {prefix, *prefix_size}, request, mode);
    if (!chunk.ok()) return 0;
    if (chunk->kind == Chunk::Kind::kData || chunk->kind == Chunk::Kind::kHole) {
      const uint64_t at = chunk->offset - request.offset;
      if (!coverage.Add(at, chunk->length).ok()) return 0;
      if (chunk->kind == Chunk::Kind::kHole) {
        std::memset(buffer.data() + at, 0, chunk->length);
      } else {
        const uint8_t* payload;
        if (!in.Take(chunk->length, &payload)) return 0;
        std::memcpy(buffer.data() + at, payload, chunk->length);
      }
    } else if (chunk->kind == Chunk::Kind::kError) {
      const uint8_t* skipped;
      if (!in.Take(chunk->message_length, &skipped)) return 0;
      if (header->type == kReplyTypeErrorOffset) {
        if (!in.Take(8, &skipped) || !CheckErrorOffset({skipped, 8}, request).ok()) return 0;
      } else if (!in.Take(chunk->trailer_length, &skipped)) {
        return 0;
      }
    }
    if (header->done()) return 0;
  }
}
