// QueueWorker's receiving: the worker only moves bytes; ReplyReader (pure)
// says what they are.
//
// One RECV is in flight at a time. It goes into the connection's staging
// buffer, or, for the rest of a read's payload, straight into the
// request's buffer:
//   copy path  a RECV takes whatever has arrived (up to the 32 KiB
//              staging buffer's free space), and every complete reply in it is
//              parsed in the same loop turn; small read payloads are
//              copied out of staging, and a payload's rest of at least
//              kDirectPayload goes straight into our buffer.
//   zero copy  a read's payload must land in the request's own pages
//              (fixed buffer `tag`), which user space cannot write: so a
//              RECV into staging asks for exactly what the reader wants
//              (a header, a prefix), never a byte of what follows, and the
//              payload is received into the fixed buffer at its offset.
//              Holes are zeroed by a READ_FIXED from /dev/zero.
#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "engine/queue_worker.h"
#include "engine/queue_worker_ops.h"
#include "engine/request_mapping.h"
#include "glog/logging.h"

namespace ublkgw::engine {

using worker_ops::FillData;
using worker_ops::FillLenOf;
using worker_ops::FillOffsetOf;
using worker_ops::Op;
using worker_ops::TagOf;
using worker_ops::UserData;

void QueueWorker::ArmRecv() {
  if (!conn_.socket_live() || recv_in_flight_) return;
  io_uring_sqe* sqe = Sqe();
  const int fd = socket_.get();
  const uint64_t payload = reader_.PayloadLeft();
  const bool staged = rx_tail_ > rx_head_;
  rx_direct_ = payload > 0 && !staged && (config_.plan.zero_copy || payload >= kDirectPayload);
  if (rx_direct_) {
    const uint16_t tag = reader_.payload_tag();
    const uint64_t at = reader_.payload_offset();
    void* const fixed_at = reinterpret_cast<void*>(queue_->FixedBufferBase(tag) + at);
    const auto len = static_cast<unsigned>(payload);
    // Every byte asked for is the payload's: the kernel may wait for all
    // of it (one completion, not one per segment that arrives).
    if (!config_.plan.zero_copy) {
      io_uring_prep_recv(sqe, fd, CopyBuffer(tag) + at, len, MSG_WAITALL);
    } else if (config_.plan.read == ReadOp::kReadFixed) {
      io_uring_prep_read_fixed(sqe, fd, fixed_at, len, 0, tag);
    } else {
      io_uring_prep_recv(sqe, fd, fixed_at, len, MSG_WAITALL);
      sqe->ioprio |= IORING_RECVSEND_FIXED_BUF;
      sqe->buf_index = tag;
    }
  } else {
    if (rx_head_ == rx_tail_) rx_head_ = rx_tail_ = 0;
    if (rx_tail_ == rx_buf_.size() && rx_head_ > 0) {  // room at the front
      std::memmove(rx_buf_.data(), rx_buf_.data() + rx_head_, rx_tail_ - rx_head_);
      rx_tail_ -= rx_head_;
      rx_head_ = 0;
    }
    // Copy path: what has arrived, up to the staging buffer's free space.
    // Zero copy: exactly what the reader wants, all of it.
    size_t len = rx_buf_.size() - rx_tail_;
    int flags = 0;
    if (config_.plan.zero_copy) {
      len = std::min(len, reader_.Want());
      flags = MSG_WAITALL;
    }
    if (len == 0) {  // a RECV of 0 bytes would read as the server's EOF
      Fault("the receive path has nothing to receive into");
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, UserData(Op::kRecv));
      recv_in_flight_ = true;
      return;
    }
    io_uring_prep_recv(sqe, fd, rx_buf_.data() + rx_tail_, len, flags);
  }
  io_uring_sqe_set_data64(sqe, UserData(Op::kRecv));
  recv_in_flight_ = true;
  stats_.OnRecv();
}

void QueueWorker::OnRecv(int res) {
  recv_in_flight_ = false;
  if (!conn_.socket_live()) return;
  if (res <= 0) {
    FailConnection(res == 0 ? absl::UnavailableError("the NBD server closed the connection")
                            : ErrnoToStatus(-res, "recv from the NBD server"));
    return;
  }
  if (rx_direct_) {
    reader_.SkipPayload(static_cast<uint64_t>(res));
  } else {
    rx_tail_ += static_cast<size_t>(res);
  }
  if (ParseReplies()) ArmRecv();
}

bool QueueWorker::ParseReplies() {
  auto find = [this](uint64_t cookie) { return tags_.InFlight(cookie); };
  for (;;) {
    std::span<const uint8_t> staged(rx_buf_.data() + rx_head_, rx_tail_ - rx_head_);
    const ReplyEvent e = reader_.Feed(staged, find);
    rx_head_ += e.consumed;
    switch (e.kind) {
      case ReplyEvent::Kind::kNeedMore:
        return true;
      case ReplyEvent::Kind::kFault:
        FailConnection(e.fault);
        return false;
      case ReplyEvent::Kind::kData:
        if (config_.plan.zero_copy) {
          // Never: zero copy receives no byte past what the reader wants.
          Fault("a read's data was received into the staging buffer on the zero-copy path");
          return false;
        }
        std::memcpy(CopyBuffer(e.tag) + e.offset, e.bytes.data(), e.bytes.size());
        break;
      case ReplyEvent::Kind::kHole:
        if (config_.plan.zero_copy) {
          ZeroFill(e.tag, static_cast<uint32_t>(e.offset), static_cast<uint32_t>(e.length));
        } else {
          std::memset(CopyBuffer(e.tag) + e.offset, 0, e.length);
        }
        break;
      case ReplyEvent::Kind::kDone:
        FinishReply(e.tag, e.result);
        break;
    }
  }
}

// Zeroes part of a read's fixed buffer in the kernel. The request is
// committed only once this is done (ReleaseBuffer).
void QueueWorker::ZeroFill(uint16_t tag, uint32_t offset, uint32_t len) {
  if (len == 0) return;
  VLOG(2) << "queue " << config_.q_id << " tag " << tag << ": zeroing a hole of " << len
          << " bytes at " << offset << " in the kernel";
  tags_.TakeBuffer(tag);
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_read_fixed(sqe, zero_fd_.get(),
                           reinterpret_cast<void*>(queue_->FixedBufferBase(tag) + offset), len, 0,
                           tag);
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
    if (t.fill_errno == 0) t.fill_errno = res < 0 ? res : -EIO;
    if (t.state == TagState::kAnswered) t.result = -EIO;  // the reply ended first
  } else if (static_cast<uint32_t>(res) < len) {
    ZeroFill(tag, offset + static_cast<uint32_t>(res), len - static_cast<uint32_t>(res));
  }
  ReleaseBuffer(tag);
}

}  // namespace ublkgw::engine
