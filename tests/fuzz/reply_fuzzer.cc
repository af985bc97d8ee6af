// libFuzzer harness for the reply path the queue worker runs: the real
// engine::ReplyReader, fed the way the worker feeds it. The input picks a
// header mode, a request (tag 1, cookie 1) and how the stream is split;
// the rest is what a server sends back. Everything the reader hands out
// must lie inside the request's buffer (ASan checks the copies), and a
// read it says is done without an error must have had every byte written.
// Fed as the zero-copy worker feeds it (the top bit of the second byte),
// at most Want() bytes at a time and payloads through SkipPayload,
// no payload byte may ever come out of what was fed.
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "engine/reply_reader.h"
#include "nbd/bytes.h"
#include "nbd/codec.h"
#include "nbd/wire.h"

namespace {

using namespace ublkgw::nbd;
using ublkgw::engine::ReplyEvent;
using ublkgw::engine::ReplyReader;

constexpr uint16_t kCommands[] = {kCmdRead, kCmdWrite, kCmdFlush, kCmdTrim, kCmdWriteZeroes, kCmdCache};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const HeaderMode mode = static_cast<HeaderMode>(data[0] % 3);
  const size_t piece = 1 + (data[0] >> 2);  // how the stream arrives: 1 to 64 bytes at a time
  const bool zero_copy = (data[1] & 0x80) != 0;
  Request request;
  request.type = kCommands[data[1] % std::size(kCommands)];
  request.cookie = 1;  // tag 1, first use
  request.offset = 1 << 20;
  request.length = (1 + LoadBe<uint16_t>(data + 2) % 256) * 512;
  std::span<const uint8_t> stream(data + 4, size - 4);

  const bool read = request.type == kCmdRead;
  std::vector<uint8_t> buffer(read ? request.length : 0);
  std::vector<bool> written(buffer.size());
  bool in_flight = true;
  ReplyReader reader(mode, 4);
  auto find = [&](uint64_t cookie) -> const Request* {
    return in_flight && cookie == request.cookie ? &request : nullptr;
  };
  while (!stream.empty()) {
    size_t n = std::min(piece, stream.size());
    if (zero_copy) {
      if (const uint64_t left = reader.PayloadLeft(); left > 0) {  // "into the pages"
        n = static_cast<size_t>(std::min<uint64_t>(left, n));
        const uint64_t at = reader.payload_offset();
        if (reader.payload_tag() != 1 || at + n > buffer.size()) __builtin_trap();
        std::memcpy(buffer.data() + at, stream.data(), n);
        for (size_t i = 0; i < n; ++i) written[at + i] = true;
        reader.SkipPayload(n);
        stream = stream.subspan(n);
        n = 0;  // a reply may end with its payload: Feed nothing to hear it
      } else {
        n = std::min(n, reader.Want());
        if (n == 0) return 0;  // faulted
      }
    }
    std::span<const uint8_t> input = stream.first(n);
    stream = stream.subspan(input.size());
    for (;;) {
      const ReplyEvent e = reader.Feed(input, find);
      input = input.subspan(e.consumed);
      switch (e.kind) {
        case ReplyEvent::Kind::kNeedMore:
          break;
        case ReplyEvent::Kind::kFault:
          return 0;
        case ReplyEvent::Kind::kData:
          if (zero_copy) __builtin_trap();  // a payload byte where zero copy cannot take it
          if (e.tag != 1 || e.offset + e.bytes.size() > buffer.size()) __builtin_trap();
          std::memcpy(buffer.data() + e.offset, e.bytes.data(), e.bytes.size());
          for (size_t i = 0; i < e.bytes.size(); ++i) written[e.offset + i] = true;
          continue;
        case ReplyEvent::Kind::kHole:
          if (e.tag != 1 || e.offset + e.length > buffer.size()) __builtin_trap();
          std::memset(buffer.data() + e.offset, 0, e.length);
          for (size_t i = 0; i < e.length; ++i) written[e.offset + i] = true;
          continue;
        case ReplyEvent::Kind::kDone:
          if (e.tag != 1 || !in_flight) __builtin_trap();
          if (e.result == 0) {
            for (bool w : written) {
              if (!w) __builtin_trap();  // a read said complete with bytes never sent
            }
          }
          in_flight = false;  // a second reply for it must be a fault
          continue;
      }
      break;
    }
  }
  return 0;
}
