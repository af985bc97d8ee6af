#include "engine/reply_reader.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/request_mapping.h"
#include "nbd/bytes.h"
#include "nbd/protocol_error.h"
#include "nbd/request_rules.h"
#include "nbd/wire.h"

namespace ublkgw::engine {

namespace {

// The bytes that tell a reply's kind: a simple reply's whole header, or
// an extended header (the only kind in that mode).
size_t FirstHeaderBytes(nbd::HeaderMode mode) {
  return mode == nbd::HeaderMode::kExtended ? nbd::kExtendedReplySize : nbd::kSimpleReplySize;
}

}  // namespace

ReplyReader::ReplyReader(nbd::HeaderMode mode, uint16_t depth) : mode_(mode), partial_(depth) {
  Reset();
}

void ReplyReader::Reset() {
  for (Partial& p : partial_) p = Partial{};
  open_replies_ = 0;
  state_ = State::kHeader;
  header_want_ = FirstHeaderBytes(mode_);
  have_ = 0;
  left_ = 0;
  trailer_ = 0;
}

bool ReplyReader::Gather(std::span<const uint8_t>& input, size_t& consumed, uint8_t* buf,
                         size_t want) {
  const size_t n = std::min(want - have_, input.size());
  if (n > 0) std::memcpy(buf + have_, input.data(), n);  // an empty span may have no data
  have_ += n;
  consumed += n;
  input = input.subspan(n);
  return have_ == want;
}

ReplyEvent ReplyReader::Fault(absl::Status why) {
  state_ = State::kFaulted;
  ReplyEvent e;
  e.kind = ReplyEvent::Kind::kFault;
  e.fault = std::move(why);
  return e;
}

absl::Status ReplyReader::OnServerError(uint32_t nbd_error) {
  // The server is going away and did not do the request: the spec has the
  // client disconnect, and the request goes again on the next connection.
  if (nbd_error == nbd::kEShutdown) {
    return absl::UnavailableError("the NBD server is shutting down (NBD_ESHUTDOWN)");
  }
  Partial& p = partial_[tag_];
  if (p.server_errno == 0) p.server_errno = nbd::NbdErrorToNegErrno(nbd_error);
  return absl::OkStatus();
}

void ReplyReader::EndChunk() {
  have_ = 0;
  Partial& p = partial_[tag_];
  if (reply_.done()) {
    done_result_ = p.server_errno;
    if (p.open) --open_replies_;
    p.open = false;
    state_ = State::kDone;
    return;
  }
  if (!p.open) ++open_replies_;
  p.open = true;
  state_ = State::kHeader;
  header_want_ = FirstHeaderBytes(mode_);
}

ReplyEvent ReplyReader::Feed(std::span<const uint8_t> input, FindRequest find) {
  ReplyEvent e;
  for (;;) {
    switch (state_) {
      case State::kFaulted:
        return Fault(absl::FailedPreconditionError("the reply stream already failed"));
      case State::kDone: {
        Partial& p = partial_[tag_];
        const bool incomplete = p.server_errno == 0 && request_.type == nbd::kCmdRead &&
                                reply_.structured && (!p.coverage || !p.coverage->complete());
        p = Partial{};
        state_ = State::kHeader;
        header_want_ = FirstHeaderBytes(mode_);
        if (incomplete) {
          // DONE before the whole read arrived, with no error.
          return Fault(nbd::ProtocolViolation(nbd::ProtocolError::kIncompleteRead,
                                              "read ended before all of it arrived"));
        }
        e.kind = ReplyEvent::Kind::kDone;
        e.tag = tag_;
        e.result = done_result_;
        return e;
      }
      case State::kHeader: {
        if (!Gather(input, e.consumed, header_, header_want_)) return e;  // kNeedMore
        if (header_want_ == FirstHeaderBytes(mode_)) {
          auto size = nbd::ReplyHeaderSize(nbd::LoadBe<uint32_t>(header_), mode_);
          if (!size.ok()) return Fault(size.status());
          if (*size > header_want_) {
            // A structured chunk: 4 more bytes; a data chunk's offset
            // (its prefix) comes right after and is taken with them.
            header_want_ = *size;
            if (nbd::LoadBe<uint16_t>(header_ + 6) == nbd::kReplyTypeOffsetData) {
              header_want_ += nbd::kDataChunkPrefixSize;
            }
            break;
          }
        }
        if (ReplyEvent r = OnHeader(find); r.kind != ReplyEvent::Kind::kNeedMore) {
          r.consumed = e.consumed;
          return r;
        }
        break;
      }
      case State::kPrefix:
        if (!Gather(input, e.consumed, prefix_, prefix_want_)) return e;
        if (ReplyEvent r = OnPrefix(); r.kind != ReplyEvent::Kind::kNeedMore) {
          if (r.kind == ReplyEvent::Kind::kFault) return r;
          r.consumed = e.consumed;
          return r;  // a hole
        }
        break;
      case State::kTrailer:
        if (!Gather(input, e.consumed, prefix_, prefix_want_)) return e;
        if (ReplyEvent r = OnTrailer(); r.kind == ReplyEvent::Kind::kFault) return r;
        break;
      case State::kPayload: {
        if (input.empty()) return e;
        const size_t n = static_cast<size_t>(std::min<uint64_t>(left_, input.size()));
        e.kind = ReplyEvent::Kind::kData;
        e.tag = tag_;
        e.offset = payload_offset_;
        e.bytes = input.first(n);
        e.consumed += n;
        SkipPayload(n);
        return e;
      }
      case State::kMessage: {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(left_, input.size()));
        left_ -= n;
        e.consumed += n;
        input = input.subspan(n);
        if (left_ > 0) return e;
        if (trailer_ > 0) {
          state_ = State::kTrailer;
          prefix_want_ = trailer_;
          have_ = 0;
        } else {
          EndChunk();
        }
        break;
      }
    }
  }
}

void ReplyReader::SkipPayload(uint64_t n) {
  if (state_ != State::kPayload) return;
  n = std::min(n, left_);
  left_ -= n;
  payload_offset_ += n;
  if (left_ == 0) EndChunk();
}

ReplyEvent ReplyReader::OnHeader(FindRequest find) {
  const size_t prefetched = header_want_ > nbd::kStructuredReplySize &&
                                    mode_ != nbd::HeaderMode::kExtended
                                ? nbd::kDataChunkPrefixSize
                                : 0;
  const size_t header_size = header_want_ - prefetched;
  auto header = nbd::DecodeReplyHeader({header_, header_size}, mode_);
  if (!header.ok()) return Fault(header.status());
  const nbd::Request* request = find(header->cookie);
  if (request == nullptr) {
    return Fault(nbd::ProtocolViolation(
        nbd::ProtocolError::kUnknownCookie,
        absl::StrCat("reply for cookie 0x", absl::Hex(header->cookie), ", which is not in flight")));
  }
  reply_ = *header;
  request_ = *request;
  tag_ = CookieTag(header->cookie);
  if (tag_ >= partial_.size()) {
    return Fault(nbd::ProtocolViolation(nbd::ProtocolError::kUnknownCookie, "tag out of range"));
  }
  have_ = 0;
  if (!reply_.structured) {
    if (absl::Status s = nbd::CheckSimpleReply(reply_, request_, mode_); !s.ok()) return Fault(s);
    if (reply_.error != 0) {
      if (absl::Status s = OnServerError(reply_.error); !s.ok()) return Fault(s);
    } else if (request_.type == nbd::kCmdRead && request_.length > 0) {
      state_ = State::kPayload;
      left_ = request_.length;
      payload_offset_ = 0;
      return {};
    }
    EndChunk();
    return {};
  }
  auto prefix = nbd::ChunkPrefixSize(reply_, request_, mode_);
  if (!prefix.ok()) return Fault(prefix.status());
  if (prefetched > 0 && *prefix != prefetched) {
    return Fault(absl::InternalError("a data chunk's prefix is not its offset"));
  }
  prefix_want_ = *prefix;
  if (prefetched > 0) {
    std::memcpy(prefix_, header_ + header_size, prefetched);
    have_ = prefetched;
  }
  state_ = State::kPrefix;
  // Prefetched (a data chunk's offset), or none to wait for (NONE).
  if (have_ == prefix_want_) return OnPrefix();
  return {};
}

ReplyEvent ReplyReader::OnPrefix() {
  auto chunk = nbd::DecodeChunk(reply_, {prefix_, prefix_want_}, request_, mode_);
  if (!chunk.ok()) return Fault(chunk.status());
  have_ = 0;
  Partial& p = partial_[tag_];
  switch (chunk->kind) {
    case nbd::Chunk::Kind::kNone:
      EndChunk();
      return {};
    case nbd::Chunk::Kind::kData:
    case nbd::Chunk::Kind::kHole: {
      if (!p.coverage) p.coverage.emplace(request_.length);
      const uint64_t at = chunk->offset - request_.offset;
      if (absl::Status s = p.coverage->Add(at, chunk->length); !s.ok()) return Fault(s);
      if (chunk->kind == nbd::Chunk::Kind::kData) {
        state_ = State::kPayload;
        left_ = chunk->length;
        payload_offset_ = at;
        if (left_ == 0) EndChunk();
        return {};
      }
      ReplyEvent e;
      e.kind = ReplyEvent::Kind::kHole;
      e.tag = tag_;
      e.offset = at;
      e.length = chunk->length;
      EndChunk();
      return e;
    }
    case nbd::Chunk::Kind::kError:
      if (absl::Status s = OnServerError(chunk->error); !s.ok()) return Fault(s);
      // The message is skipped; ERROR_OFFSET's offset is checked; an
      // unknown error type's trailer is skipped with the message.
      left_ = chunk->message_length;
      trailer_ = 0;
      if (reply_.type == nbd::kReplyTypeErrorOffset) {
        trailer_ = chunk->trailer_length;
      } else {
        left_ += chunk->trailer_length;
      }
      state_ = State::kMessage;
      return {};
  }
  return {};
}

ReplyEvent ReplyReader::OnTrailer() {
  if (absl::Status s = nbd::CheckErrorOffset({prefix_, prefix_want_}, request_); !s.ok()) {
    return Fault(s);
  }
  trailer_ = 0;
  EndChunk();
  return {};
}

}  // namespace ublkgw::engine
