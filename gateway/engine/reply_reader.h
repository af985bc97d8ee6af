// The NBD reply stream of one connection as a pure state machine: bytes in,
// events out, no I/O ("sans-I/O"). The queue worker feeds it what its
// RECVs bring and acts on each event; the fuzzer and the unit tests feed it
// any bytes, split anywhere.
//
// Every byte is checked against the request it answers (nbd/codec.h): a
// reply whose cookie is not that of a request in flight, a chunk outside
// its read, overlapping chunks, a read said done before all of it came, an
// ERROR_OFFSET outside the request: each is a fault, after which the
// connection must be dropped (and Reset() before the next one).
// Structured replies to different requests may interleave; what each has
// received so far is kept per tag.
#ifndef UBLKGW_ENGINE_REPLY_READER_H_
#define UBLKGW_ENGINE_REPLY_READER_H_

#include <algorithm>
#include <cstdint>
#include <cstddef>
#include <optional>
#include <span>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "nbd/codec.h"
#include "nbd/wire.h"

namespace ublkgw::engine {

struct ReplyEvent {
  enum class Kind : uint8_t {
    kNeedMore,  // every byte given was taken; nothing more until more come
    kData,      // `bytes` (part of the input) of a read's data, for `offset` in its buffer
    kHole,      // `length` zeroes at `offset` in the read's buffer
    kDone,      // the reply to `tag` is complete: `result` is 0 or -errno
    kFault,     // the server broke the protocol (`fault`): drop the connection
  };
  Kind kind = Kind::kNeedMore;
  size_t consumed = 0;  // input bytes used up, up to and including this event's
  uint16_t tag = 0;
  uint64_t offset = 0;  // in the request's buffer
  uint64_t length = 0;  // kHole
  std::span<const uint8_t> bytes;  // kData: part of the input
  int32_t result = 0;              // kDone
  absl::Status fault;              // kFault
};

class ReplyReader {
 public:
  // The request in flight whose current send has `cookie`, or null.
  using FindRequest = absl::FunctionRef<const nbd::Request*(uint64_t cookie)>;

  // `depth`: tags are below it (their number is the cookie's low 16 bits).
  ReplyReader(nbd::HeaderMode mode, uint16_t depth);

  // Takes what it can of `input` and says what happened. Call again with
  // the rest (input.subspan(consumed)) until kNeedMore; after a kFault,
  // nothing more is taken until Reset().
  ReplyEvent Feed(std::span<const uint8_t> input, FindRequest find);

  // The fewest bytes that can move it on: the rest of the header, prefix
  // or payload it is in. Never more than that element, so a caller that
  // asks for exactly this never takes bytes of what follows.
  size_t Want() const;

  // Payload of a read being received (0 otherwise): its tag, and the
  // offset in its buffer where the next byte goes. A caller may receive
  // those bytes elsewhere (straight into the request's buffer) and tell
  // with SkipPayload(n), n <= PayloadLeft().
  uint64_t PayloadLeft() const { return state_ == State::kPayload ? left_ : 0; }
  uint16_t payload_tag() const { return tag_; }
  uint64_t payload_offset() const { return payload_offset_; }
  void SkipPayload(uint64_t n);

  // An event is due even with no more input (a reply complete, a fault):
  // without one, Feed of nothing says only kNeedMore.
  bool event_due() const { return state_ == State::kDone || state_ == State::kFaulted; }

  // Structured replies are open (a chunk of each came, not its last) and
  // no byte of the next header has: the server has more to send, and may
  // be holding it until what it sent is acknowledged (nbd::AckNow).
  bool BetweenChunks() const {
    return open_replies_ > 0 && state_ == State::kHeader && have_ == 0;
  }

  // Forgets the stream and every partial reply (a new connection).
  void Reset();

 private:
  enum class State : uint8_t {
    kHeader,   // accumulating a reply or chunk header in header_
    kPrefix,   // accumulating a chunk's fixed prefix in prefix_
    kPayload,  // a read's data: left_ bytes for payload_offset_
    kMessage,  // an error chunk's message: left_ bytes skipped
    kTrailer,  // an error chunk's trailer: accumulated in prefix_
    kDone,     // the reply to tag_ is complete: kDone is due
    kFaulted,
  };
  // What one request has received so far, across chunks.
  struct Partial {
    std::optional<nbd::ReadCoverage> coverage;  // inline: no allocation per read
    int32_t server_errno = 0;
    bool open = false;  // a chunk came, not the last
  };

  ReplyEvent OnHeader(FindRequest find);
  ReplyEvent OnPrefix();
  ReplyEvent OnTrailer();
  // The current chunk is over: its reply is done, or the next header comes.
  void EndChunk();
  ReplyEvent Fault(absl::Status why);
  // A server error for tag_: kept (the first), or a fault for NBD_ESHUTDOWN.
  absl::Status OnServerError(uint32_t nbd_error);
  // Accumulates into `buf` up to `want` bytes; true once it has them.
  bool Gather(std::span<const uint8_t>& input, size_t& consumed, uint8_t* buf, size_t want);

  nbd::HeaderMode mode_;
  std::vector<Partial> partial_;
  State state_ = State::kHeader;
  uint8_t header_[nbd::kExtendedReplySize + nbd::kDataChunkPrefixSize];
  size_t header_want_ = 0;
  size_t have_ = 0;  // bytes gathered of the header, prefix or trailer
  uint8_t prefix_[16];
  size_t prefix_want_ = 0;
  nbd::ReplyHeader reply_{};
  nbd::Request request_{};  // the one being answered
  uint16_t tag_ = 0;
  uint64_t left_ = 0;
  uint64_t payload_offset_ = 0;
  uint32_t trailer_ = 0;
  int32_t done_result_ = 0;
  uint32_t open_replies_ = 0;  // Partials with `open`
};

inline size_t ReplyReader::Want() const {
  switch (state_) {
    case State::kHeader:
      return header_want_ - have_;
    case State::kPrefix:
    case State::kTrailer:
      return prefix_want_ - have_;
    case State::kPayload:
    case State::kMessage:
      return static_cast<size_t>(std::min<uint64_t>(left_, SIZE_MAX));
    case State::kDone:
    case State::kFaulted:
      return 0;
  }
  return 0;
}

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_REPLY_READER_H_
