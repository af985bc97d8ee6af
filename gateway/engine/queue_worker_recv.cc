// QueueWorker's receiving: replies are parsed in order, one RECV at a
// time, the header into our memory and a read's data straight into the
// request's buffer: ours in the copy path, fixed buffer `tag` (the
// request's own pages) in the zero-copy path, where holes are zeroed by a
// READ_FIXED from /dev/zero rather than by a user-space memset.
#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "engine/queue_worker.h"
#include "engine/queue_worker_ops.h"
#include "engine/request_mapping.h"
#include "glog/logging.h"
#include "nbd/bytes.h"
#include "nbd/protocol_error.h"
#include "nbd/request_rules.h"
#include "nbd/wire.h"

namespace ublkgw::engine {

using worker_ops::FillData;
using worker_ops::FillLenOf;
using worker_ops::FillOffsetOf;
using worker_ops::Op;
using worker_ops::TagOf;
using worker_ops::UserData;

void QueueWorker::ArmRecv() {
  if (!connected_ || recv_in_flight_) return;
  if (rx_step_ == RxStep::kHeader && rx_got_ == 0) {
    // A new reply: the shortest header first; the magic says if more follows.
    rx_dest_ = reinterpret_cast<uintptr_t>(rx_header_);
    rx_fixed_ = false;
    rx_prefetched_ = 0;
    rx_want_ = info_.mode == nbd::HeaderMode::kExtended ? nbd::kExtendedReplySize
                                                       : nbd::kSimpleReplySize;
  }
  io_uring_sqe* sqe = Sqe();
  void* at = reinterpret_cast<void*>(rx_dest_ + rx_got_);
  const unsigned len = static_cast<unsigned>(rx_want_ - rx_got_);
  if (rx_fixed_ && config_.plan.read == ReadOp::kReadFixed) {
    io_uring_prep_read_fixed(sqe, socket_.get(), at, len, 0, rx_tag_);
  } else {
    io_uring_prep_recv(sqe, socket_.get(), at, len, MSG_WAITALL);
    if (rx_fixed_) {
      sqe->ioprio |= IORING_RECVSEND_FIXED_BUF;
      sqe->buf_index = rx_tag_;
    }
  }
  io_uring_sqe_set_data64(sqe, UserData(Op::kRecv));
  recv_in_flight_ = true;
}

void QueueWorker::OnRecv(int res) {
  recv_in_flight_ = false;
  if (!connected_) return;
  if (res <= 0) {
    FailConnection(res == 0 ? absl::UnavailableError("the NBD server closed the connection")
                            : ErrnoToStatus(-res, "recv from the NBD server"));
    return;
  }
  rx_got_ += static_cast<size_t>(res);
  if (rx_got_ < rx_want_) {
    ArmRecv();
    return;
  }
  if (absl::Status s = StepRx(); !s.ok()) {
    FailConnection(s);
    return;
  }
  ArmRecv();
}

// A RECV filled what it asked for: move the reply's state machine on.
absl::Status QueueWorker::StepRx() {
  switch (rx_step_) {
    case RxStep::kHeader: {
      auto size = nbd::ReplyHeaderSize(nbd::LoadBe<uint32_t>(rx_header_), info_.mode);
      if (!size.ok()) return size.status();
      if (*size > rx_got_) {  // a structured chunk: 4 more bytes
        rx_step_ = RxStep::kHeaderTail;
        rx_want_ = *size;
        // A data chunk's offset comes right after its header: one RECV
        // takes both (the type is in the part already here).
        if (nbd::LoadBe<uint16_t>(rx_header_ + 6) == nbd::kReplyTypeOffsetData) {
          rx_prefetched_ = nbd::kDataChunkPrefixSize;
          rx_want_ += rx_prefetched_;
        }
        return absl::OkStatus();
      }
      return OnReplyHeader();
    }
    case RxStep::kHeaderTail:
      return OnReplyHeader();
    case RxStep::kChunkPrefix:
      return OnChunkPrefix();
    case RxStep::kPayload:
      // A simple reply ends with its data; a chunk ends its reply if DONE.
      if (rx_reply_.done()) FinishReply(rx_tag_);
      rx_step_ = RxStep::kHeader;
      rx_got_ = 0;
      return absl::OkStatus();
    case RxStep::kSkip: {
      rx_skip_left_ -= rx_got_;
      if (rx_skip_left_ > 0) {
        rx_dest_ = reinterpret_cast<uintptr_t>(rx_scratch_);
        rx_fixed_ = false;
        rx_want_ = std::min<uint64_t>(rx_skip_left_, sizeof(rx_scratch_));
        rx_got_ = 0;
        return absl::OkStatus();
      }
      return AfterErrorMessage();
    }
    case RxStep::kErrorTrailer: {
      if (rx_reply_.type == nbd::kReplyTypeErrorOffset) {
        absl::Status s = nbd::CheckErrorOffset({rx_scratch_, rx_want_}, tags_[rx_tag_].request);
        if (!s.ok()) return s;
      }
      rx_trailer_ = 0;
      if (rx_reply_.done()) FinishReply(rx_tag_);
      rx_step_ = RxStep::kHeader;
      rx_got_ = 0;
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown receive step");
}

absl::Status QueueWorker::OnReplyHeader() {
  const size_t header_size = rx_want_ - rx_prefetched_;
  auto header = nbd::DecodeReplyHeader({rx_header_, header_size}, info_.mode);
  if (!header.ok()) return header.status();
  // Only the cookie of a tag's current send, while it awaits its reply.
  const uint16_t tag = CookieTag(header->cookie);
  if (tag >= config_.depth || tags_[tag].state != TagState::kInFlight ||
      tags_[tag].cookie != header->cookie || tags_[tag].reply_waiting) {
    return nbd::ProtocolViolation(nbd::ProtocolError::kUnknownCookie,
                                  absl::StrCat("reply for cookie 0x", absl::Hex(header->cookie),
                                               ", which is not in flight on queue ", config_.q_id));
  }
  rx_reply_ = *header;
  rx_tag_ = tag;
  Tag& t = tags_[rx_tag_];
  rx_got_ = 0;
  if (!header->structured) {
    if (absl::Status s = nbd::CheckSimpleReply(*header, t.request, info_.mode); !s.ok()) return s;
    if (header->error == 0 && t.request.type == nbd::kCmdRead) {
      ReceivePayload(0, t.request.length);
      return absl::OkStatus();
    }
    if (header->error != 0) {
      if (absl::Status s = OnServerError(header->error); !s.ok()) return s;
    }
    FinishReply(rx_tag_);
    rx_step_ = RxStep::kHeader;
    return absl::OkStatus();
  }
  auto prefix = nbd::ChunkPrefixSize(*header, t.request, info_.mode);
  if (!prefix.ok()) return prefix.status();
  if (rx_prefetched_ > 0) {
    // The prefix came with the header: decode it from there.
    if (*prefix != rx_prefetched_) {
      return absl::InternalError("a data chunk's prefix is not its offset");
    }
    std::memcpy(rx_scratch_, rx_header_ + header_size, rx_prefetched_);
    rx_want_ = rx_prefetched_;
    rx_prefetched_ = 0;
    rx_step_ = RxStep::kChunkPrefix;
    return OnChunkPrefix();
  }
  rx_step_ = RxStep::kChunkPrefix;
  rx_dest_ = reinterpret_cast<uintptr_t>(rx_scratch_);
  rx_fixed_ = false;
  rx_want_ = *prefix;
  if (*prefix == 0) return OnChunkPrefix();
  return absl::OkStatus();
}

absl::Status QueueWorker::OnChunkPrefix() {
  Tag& t = tags_[rx_tag_];
  auto chunk = nbd::DecodeChunk(rx_reply_, {rx_scratch_, rx_want_}, t.request, info_.mode);
  if (!chunk.ok()) return chunk.status();
  rx_chunk_ = *chunk;
  rx_got_ = 0;
  switch (chunk->kind) {
    case nbd::Chunk::Kind::kNone:
      break;
    case nbd::Chunk::Kind::kData:
    case nbd::Chunk::Kind::kHole: {
      if (!t.coverage) t.coverage = std::make_unique<nbd::ReadCoverage>(t.request.length);
      const uint64_t at = chunk->offset - t.request.offset;
      if (absl::Status s = t.coverage->Add(at, chunk->length); !s.ok()) return s;
      if (chunk->kind == nbd::Chunk::Kind::kHole) {
        if (config_.plan.zero_copy) {
          ZeroFill(rx_tag_, static_cast<uint32_t>(at), chunk->length);
        } else {
          std::memset(CopyBuffer(rx_tag_) + at, 0, chunk->length);
        }
        break;
      }
      ReceivePayload(at, chunk->length);
      return absl::OkStatus();
    }
    case nbd::Chunk::Kind::kError:
      if (absl::Status s = OnServerError(chunk->error); !s.ok()) return s;
      // The message is skipped; then ERROR_OFFSET's offset is checked
      // (an unknown error type's trailer is skipped too).
      rx_trailer_ = chunk->trailer_length;
      rx_skip_left_ = chunk->message_length;
      if (rx_skip_left_ > 0) {
        rx_step_ = RxStep::kSkip;
        rx_dest_ = reinterpret_cast<uintptr_t>(rx_scratch_);
        rx_fixed_ = false;
        rx_want_ = std::min<uint64_t>(rx_skip_left_, sizeof(rx_scratch_));
        return absl::OkStatus();
      }
      return AfterErrorMessage();
  }
  if (rx_reply_.done()) FinishReply(rx_tag_);
  rx_step_ = RxStep::kHeader;
  return absl::OkStatus();
}

absl::Status QueueWorker::AfterErrorMessage() {
  rx_got_ = 0;
  if (rx_trailer_ > 0) {
    // ERROR_OFFSET's 8-byte offset; an unknown error type's rest is at most
    // kMaxStringLength, which rx_scratch_ holds.
    if (rx_trailer_ > sizeof(rx_scratch_)) {
      return nbd::ProtocolViolation(nbd::ProtocolError::kOversizedLength,
                                    absl::StrCat("error chunk trailer of ", rx_trailer_, " bytes"));
    }
    rx_step_ = RxStep::kErrorTrailer;
    rx_dest_ = reinterpret_cast<uintptr_t>(rx_scratch_);
    rx_fixed_ = false;
    rx_want_ = rx_trailer_;
    return absl::OkStatus();
  }
  if (rx_reply_.done()) FinishReply(rx_tag_);
  rx_step_ = RxStep::kHeader;
  return absl::OkStatus();
}

// A server error for the request being received: kept as the -errno the
// kernel is told (the first, if a reply has several). NBD_ESHUTDOWN means
// the server is going away and did not do the request: the spec has the
// client disconnect, so it is a connection failure, and the request goes
// again on the next connection.
absl::Status QueueWorker::OnServerError(uint32_t nbd_error) {
  if (nbd_error == nbd::kEShutdown) {
    return absl::UnavailableError("the NBD server is shutting down (NBD_ESHUTDOWN)");
  }
  Tag& t = tags_[rx_tag_];
  if (t.server_errno == 0) t.server_errno = nbd::NbdErrorToNegErrno(nbd_error);
  return absl::OkStatus();
}

// The next RECV takes `len` bytes of the read in flight into its buffer at
// `offset`.
void QueueWorker::ReceivePayload(uint64_t offset, uint32_t len) {
  rx_step_ = RxStep::kPayload;
  rx_fixed_ = config_.plan.zero_copy;
  rx_dest_ = rx_fixed_ ? offset : reinterpret_cast<uintptr_t>(CopyBuffer(rx_tag_) + offset);
  rx_want_ = len;
}

// Zeroes part of a read's fixed buffer in the kernel. The request is
// committed only once this is done (ReleaseBuffer).
void QueueWorker::ZeroFill(uint16_t tag, uint32_t offset, uint32_t len) {
  if (len == 0) return;
  VLOG(2) << "queue " << config_.q_id << " tag " << tag << ": zeroing a hole of " << len
          << " bytes at " << offset << " in the kernel";
  ++tags_[tag].buffer_users;
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_read_fixed(sqe, zero_fd_.get(), reinterpret_cast<void*>(uintptr_t{offset}), len,
                           0, tag);
  io_uring_sqe_set_data64(sqe, FillData(tag, offset, len));
}

void QueueWorker::OnZeroFill(uint64_t user_data, int res) {
  // The fill does not need the connection: it goes on if that fails.
  const uint16_t tag = TagOf(user_data);
  Tag& t = tags_[tag];
  const uint32_t offset = FillOffsetOf(user_data), len = FillLenOf(user_data);
  if (res == -EINTR || res == -EAGAIN) {
    ZeroFill(tag, offset, len);  // interrupted: try again
  } else if (res <= 0) {
    LOG(ERROR) << "queue " << config_.q_id << " tag " << tag << ": zeroing a hole failed: " << res;
    if (t.server_errno == 0) t.server_errno = res < 0 ? res : -EIO;
    if (t.reply_waiting) t.reply_result = -EIO;  // the reply ended first
  } else if (static_cast<uint32_t>(res) < len) {
    ZeroFill(tag, offset + static_cast<uint32_t>(res), len - static_cast<uint32_t>(res));
  }
  ReleaseBuffer(tag);
}

}  // namespace ublkgw::engine
