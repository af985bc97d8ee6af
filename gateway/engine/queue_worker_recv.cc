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
//              kDirectPayload goes straight into our buffer. While a read
//              of kDirectPayload or more may be answered, a staging RECV
//              asks for exactly what the reader wants, as zero copy's do:
//              a wide one would take up to 32 KiB of that read's payload
//              only to copy it out again, which made 128 KiB reads 8%
//              slower than exact RECVs (docs/BENCHMARKS.md). A wide RECV
//              armed before such a read was queued is taken back first,
//              as zero copy does for any read.
//   zero copy  a read's payload must land in the request's own pages
//              (fixed buffer `tag`), which user space cannot write, so no
//              byte of it may come through staging. While a read may be
//              answered, a staging RECV asks for exactly what the reader
//              wants (ReplyReader::Want: the rest of a header, or of a data
//              chunk's offset; never a byte of what follows), all of it
//              (MSG_WAITALL); the payload is then received into the fixed
//              buffer at its offset. While no read waits for a reply and
//              others do, nothing that comes can be a read's data: the
//              RECV is wide (up to the staging buffer's free space) and
//              takes several replies at once. A read that wants to go
//              meanwhile waits until that RECV is taken back
//              (ASYNC_CANCEL) or completes, so its data never meets it.
//              Holes are zeroed by a READ_FIXED from /dev/zero.
//              (Asking for a header and a data offset in one RECV, or
//              linking the next header's RECV behind a payload's, made
//              fewer RECVs but measured slower: docs/BENCHMARKS.md.)
#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "engine/queue_worker.h"
#include "engine/queue_worker_ops.h"
#include "engine/request_mapping.h"
#include "glog/logging.h"
#include "nbd/stream.h"

namespace ublkgw::engine {

using worker_ops::FillData;
using worker_ops::FillLenOf;
using worker_ops::FillOffsetOf;
using worker_ops::Op;
using worker_ops::TagOf;
using worker_ops::UserData;

void QueueWorker::ArmRecv() {
  if (!conn_.socket_live() || recv_in_flight_) return;
  const int fd = socket_.get();
  const uint64_t payload = reader_.PayloadLeft();
  const bool staged = rx_tail_ > rx_head_;
  rx_direct_ = payload > 0 && !staged && (config_.plan.zero_copy || payload >= kDirectPayload);
  rx_wide_ = false;
  if (rx_direct_) {
    io_uring_sqe *sqe = Sqe();
    const uint16_t tag = reader_.payload_tag();
    const uint64_t at = reader_.payload_offset();
    void *const fixed_at = reinterpret_cast<void *>(queue_->FixedBufferBase(tag) + at);
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
    io_uring_sqe_set_data64(sqe, UserData(Op::kRecv));
    if (config_.plan.zero_copy) Lend(sqe, tag);
    recv_in_flight_ = true;
    stats_.OnRecv();
    return;
  }
  io_uring_sqe *sqe = Sqe();
  if (rx_head_ == rx_tail_) rx_head_ = rx_tail_ = 0;
  if (rx_tail_ == rx_buf_.size() && rx_head_ > 0) {  // room at the front
    std::memmove(rx_buf_.data(), rx_buf_.data() + rx_head_, rx_tail_ - rx_head_);
    rx_tail_ -= rx_head_;
    rx_head_ = 0;
  }
  // What has arrived, up to the staging buffer's free space; or exactly
  // Want(), all of it, where a read's payload must not (zero copy) or
  // should not (the copy path's large reads) come through staging.
  size_t len = rx_buf_.size() - rx_tail_;
  int flags = 0;
  // Zero copy asks for a header while nothing is in flight, so a read that
  // comes next need not wait for a wide RECV to be taken back.
  rx_wide_ = ReadsKeptFromWideRecvs() == 0 &&
             (tags_.unanswered() > 0 || !config_.plan.zero_copy);
  if (!rx_wide_) {
    len = std::min(len, reader_.Want());
    flags = MSG_WAITALL;
  }
  if (len == 0) {  // a RECV of 0 bytes would read as the server's EOF
    Fault("the receive path has nothing to receive into");
    io_uring_prep_nop(sqe);
  } else {
    io_uring_prep_recv(sqe, fd, rx_buf_.data() + rx_tail_, len, flags);
    stats_.OnRecv();
  }
  io_uring_sqe_set_data64(sqe, UserData(Op::kRecv));
  recv_in_flight_ = true;
}

// A read kept from wide RECVs is queued while the wide RECV waits: take the RECV back
// before the read goes (MaybeSend holds it until then).
void QueueWorker::CancelWideRecv() {
  if (rx_cancelling_) return;
  rx_cancelling_ = true;
  io_uring_sqe *sqe = Sqe();
  io_uring_prep_cancel64(sqe, UserData(Op::kRecv), 0);
  io_uring_sqe_set_data64(sqe, UserData(Op::kCancel));
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;  // a failure: the RECV completed first
}

void QueueWorker::OnRecv(int res) {
  recv_in_flight_ = false;
  const bool cancelled = rx_cancelling_;
  rx_wide_ = rx_cancelling_ = false;
  if (!conn_.socket_live()) return;
  if (res == -ECANCELED && cancelled) {
    ArmRecv();  // taken back for a read: nothing was received
    return;
  }
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
  if (!ParseReplies()) return;
  // Everything received is taken and a structured reply waits for its next
  // chunk: acknowledge now, or a server under Nagle's algorithm holds that
  // chunk until our delayed ACK, 40 ms later (nbd::AckNow).
  if (rx_head_ == rx_tail_ && reader_.BetweenChunks()) {
    nbd::AckNow(socket_.get());
    stats_.OnAckPushed();
  }
  ArmRecv();
}

bool QueueWorker::ParseReplies() {
  auto find = [this](uint64_t cookie) { return tags_.InFlight(cookie); };
  for (;;) {
    std::span<const uint8_t> staged(rx_buf_.data() + rx_head_, rx_tail_ - rx_head_);
    if (staged.empty() && !reader_.event_due()) return true;  // Feed would say kNeedMore
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
          // Never: zero copy's staging RECVs stop where a payload could start.
          Fault(
              "a read's data was received into the staging buffer on the "
              "zero-copy path");
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
  io_uring_sqe *sqe = Sqe();
  io_uring_prep_read_fixed(sqe, zero_fd_.get(),
                           reinterpret_cast<void *>(queue_->FixedBufferBase(tag) + offset), len, 0,
                           tag);
  io_uring_sqe_set_data64(sqe, FillData(tag, offset, len));
  Lend(sqe, tag);
}

void QueueWorker::OnZeroFill(uint64_t user_data, int res) {
  // The fill does not need the connection: it goes on if that fails.
  const uint16_t tag = TagOf(user_data);
  Tag &t = tags_[tag];
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
