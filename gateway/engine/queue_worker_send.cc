// QueueWorker's sending: requests leave in chains of linked io_uring ops.
//
// A chain carries up to kMaxBatch requests in order. Runs of user memory
// (headers; in the copy path also payloads, from our buffers) go as one
// SENDMSG each; in the zero-copy path each write's payload is its own op on
// fixed buffer `tag` (SEND, SEND_ZC or WRITE_FIXED, by size and kernel).
// With explicit registration the chain starts with a REGISTER_IO_BUF for
// each of its reads and writes, so a buffer is in the table before its
// payload is sent or its reply (which needs the request header sent
// first) is received into it.
// The ops are linked, so nothing else gets between them on the stream, and
// are queued together, so a submit never splits a chain. When one op comes
// up short, the kernel cancels those after it: once every op of the chain
// has completed, what was not sent is sent again, in order.
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "engine/queue_worker.h"
#include "engine/queue_worker_ops.h"
#include "engine/request_mapping.h"
#include "glog/logging.h"
#include "nbd/wire.h"

namespace ublkgw::engine {

using worker_ops::kMaxBatch;
using worker_ops::SendData;
using worker_ops::SendIndexOf;
using worker_ops::TagOf;

void QueueWorker::MaybeSend() {
  if (!chain_.empty() || send_queue_.empty() || !conn_.may_send()) return;
  if (tags_.suspect_in_flight()) return;  // nothing follows a suspect until its reply
  if (rx_wide_ && recv_in_flight_ && ReadsKeptFromWideRecvs() > 0) {
    CancelWideRecv();  // a read's data must not meet the wide RECV: after it, then
    return;
  }
  const bool explicit_reg =
      config_.plan.zero_copy && config_.plan.registration == BufferRegistration::kExplicit;
  for (size_t n = 0; n < kMaxBatch && !send_queue_.empty(); ++n) {
    const uint16_t tag = send_queue_.front();
    Tag& t = tags_[tag];
    if (t.attempts >= kSuspectAttempts && n > 0) break;  // a suspect goes alone
    send_queue_.pop_front();
    // Encoded now: each send has a cookie of its own.
    const uint64_t cookie = MakeCookie(++sends_, tag);
    t.request.cookie = cookie;
    auto size = nbd::EncodeRequest(t.request, info_.mode, t.header);
    if (!size.ok()) {  // MapRequest validated the request: a bug of ours
      LOG(ERROR) << "queue " << config_.q_id << " tag " << tag << ": internal error: "
                 << size.status() << "; failing the request with EIO";
      Complete(tag, -EIO);
      continue;
    }
    if (!tags_.Send(tag, cookie, now_ns_, ++send_seq_)) {
      EndChain();  // what was built is never submitted: the drain must not wait for it
      Fault(absl::StrCat("tag ", tag, " in the send queue but not queued"));
      return;
    }
    t.header_size = *size;
    chain_.AddMemory(t.header, t.header_size);
    const bool data = t.request.type == nbd::kCmdRead || t.request.type == nbd::kCmdWrite;
    if (explicit_reg && data && t.request.length > 0 && !t.registered) {  // not if resent
      t.registered = true;
      chain_.AddRegister(tag);
    }
    if (t.request.type == nbd::kCmdWrite) {
      tags_.TakeBuffer(tag);  // until its payload is out
      if (config_.plan.zero_copy) {
        chain_.AddFixed(tag, config_.plan.WriteOpFor(t.request.length), t.request.length);
      } else {
        chain_.AddMemoryPayload(tag, CopyBuffer(tag), t.request.length);
      }
    }
    if (t.alone) break;
  }
  if (!chain_.empty()) SubmitChain(/*with_registers=*/true);
}

// Queues every op of the chain not sent yet, linked, in one go: the first
// time behind the REGISTER_IO_BUFs of its requests.
void QueueWorker::SubmitChain(bool with_registers) {
  io_uring* ring = ring_->get();
  size_t left = chain_.Pending();
  const size_t registers = with_registers ? chain_.registers().size() : 0;
  if (io_uring_sq_space_left(ring) < left + registers) {
    io_uring_submit(ring);
    stats_.OnRingEnter();
  }
  if (io_uring_sq_space_left(ring) < left + registers) {
    // The ring is sized for a whole chain: the kernel takes no submissions.
    Fault("no room in the submission queue for a send chain");
    EndChain();
    return;
  }
  chain_.Submitted(left);
  for (size_t i = 0; i < registers; ++i) {
    const uint16_t tag = chain_.registers()[i];
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    queue_->Prep(sqe, ublk::kIoRegisterIoBuf, tag, 0, /*addr=*/tag,  // the slot
                 worker_ops::BufRegData(tag, /*unregister=*/false));
    // A failed registration cancels the sends after it.
    sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
  }
  for (size_t i = 0; i < chain_.size(); ++i) {
    if (chain_.op(i).done) continue;
    // More follows in this chain: let TCP fill whole segments rather than
    // push each op's bytes on their own.
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    PrepChainOp(sqe, i, MSG_NOSIGNAL | MSG_WAITALL | (left > 1 ? MSG_MORE : 0));
    if (--left > 0) sqe->flags |= IOSQE_IO_LINK;
  }
}

void QueueWorker::PrepChainOp(io_uring_sqe* sqe, size_t index, int flags) {
  const int fd = socket_.get();
  const SendChain::Op& op = chain_.op(index);
  if (!op.fixed) {
    io_uring_prep_sendmsg(sqe, fd, chain_.Msg(index), flags);
  } else {
    void* at = reinterpret_cast<void*>(queue_->FixedBufferBase(op.tag) + op.offset);
    switch (op.write) {
      case WriteOp::kSend:
        io_uring_prep_send(sqe, fd, at, op.len, flags);
        sqe->ioprio |= IORING_RECVSEND_FIXED_BUF;
        sqe->buf_index = op.tag;
        break;
      case WriteOp::kSendZc:
        io_uring_prep_send_zc_fixed(sqe, fd, at, op.len, flags, 0, op.tag);
        break;
      case WriteOp::kWriteFixed:
        io_uring_prep_write_fixed(sqe, fd, at, op.len, 0, op.tag);
        break;
    }
  }
  io_uring_sqe_set_data64(sqe, SendData(op.tag, static_cast<uint16_t>(index)));
  if (op.fixed) Lend(sqe, op.tag);  // the link flag SubmitChain adds is then the master's
}

void QueueWorker::OnSend(const io_uring_cqe& cqe) {
  const uint16_t tag = TagOf(cqe.user_data);
  if ((cqe.flags & IORING_CQE_F_NOTIF) != 0) {
    // SEND_ZC's second completion: the pages are the request's again.
    ReleaseBuffer(tag);
    return;
  }
  const size_t index = SendIndexOf(cqe.user_data);
  if (!chain_.Completed(index)) {
    Fault(absl::StrCat("a send completion (op ", index, ") outside the send chain"));
    return;
  }
  const SendChain::Op& op = chain_.op(index);
  const int res = cqe.res;
  if (op.fixed && op.write == WriteOp::kSendZc && (cqe.flags & IORING_CQE_F_MORE) != 0) {
    tags_.TakeBuffer(op.tag);  // until the notification, which comes in any case
  }
  if (conn_.socket_live()) {
    if (res == 0) {
      FailConnection(absl::UnavailableError("a send to the NBD server made no progress"));
    } else if (res < 0 && res != -ECANCELED) {  // cancelled: an earlier op came up short
      FailConnection(ErrnoToStatus(-res, "send to the NBD server"));
    } else if (res > 0 && chain_.Advance(index, static_cast<size_t>(res))) {
      ReleaseBuffer(op.tag);  // a fixed payload all sent
    }
  }
  if (chain_.in_kernel() > 0) return;
  if (conn_.socket_live() && chain_.Pending() > 0) {
    SubmitChain(/*with_registers=*/false);  // a short send: the rest again, in order
    return;
  }
  EndChain();
}

// The chain is over: all sent, or the connection failed and what was not
// sent goes again on the next one (Recover). No op uses the copy path's
// payload buffers, or a zero-copy payload it did not send, any more; a
// reply that came first can complete now, unless it answered a write
// whose data never all left: a server that acknowledges what it cannot
// have received gets EIO for it, never a success.
void QueueWorker::EndChain() {
  chain_.End(&unsent_, &release_);
  for (uint16_t tag : unsent_) {
    Tag& t = tags_[tag];
    if (t.state == TagState::kAnswered && t.request.type == nbd::kCmdWrite && t.result >= 0) {
      LOG(ERROR) << "queue " << config_.q_id << " tag " << tag
                 << ": the server acknowledged a write whose data was not all sent; failing "
                    "it with EIO";
      t.result = -EIO;
    }
  }
  for (uint16_t tag : release_) ReleaseBuffer(tag);
}

}  // namespace ublkgw::engine
