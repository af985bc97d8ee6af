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
  if (!chain_.empty() || send_queue_.empty() || !connected_ || alone_tag_ >= 0) return;
  if (leaving_.load(std::memory_order_relaxed)) return;  // the next daemon sends it
  send_iov_.clear();
  send_batch_.clear();
  chain_registered_.clear();
  const bool explicit_reg =
      config_.plan.zero_copy && config_.plan.registration == BufferRegistration::kExplicit;
  for (size_t n = 0; n < kMaxBatch && !send_queue_.empty(); ++n) {
    const uint16_t tag = send_queue_.front();
    Tag& t = tags_[tag];
    if (t.attempts >= 2) {  // a suspect: it goes alone (alone_tag_)
      if (n > 0) break;
      alone_tag_ = tag;
    }
    send_queue_.pop_front();
    // Encoded now: each send has a cookie of its own.
    t.cookie = MakeCookie(++sends_, tag);
    t.request.cookie = t.cookie;
    auto size = nbd::EncodeRequest(t.request, info_.mode, t.header);
    if (!size.ok()) {  // MapRequest validated the request: a bug of ours
      LOG(ERROR) << "queue " << config_.q_id << " tag " << tag << ": internal error: "
                 << size.status() << "; failing the request with EIO";
      if (alone_tag_ == tag) alone_tag_ = -1;
      Complete(tag, -EIO);
      continue;
    }
    t.state = TagState::kInFlight;
    t.header_size = *size;
    t.sent_ns = now_ns_;
    t.send_seq = ++send_seq_;
    ++t.attempts;
    if (chain_.empty() || chain_.back().fixed) {
      SendOp op;
      op.iov_begin = op.iov_end = static_cast<uint32_t>(send_iov_.size());
      op.batch_begin = op.batch_end = static_cast<uint32_t>(send_batch_.size());
      chain_.push_back(op);
    }
    send_iov_.push_back({t.header, t.header_size});
    chain_.back().iov_end++;
    const bool data = t.request.type == nbd::kCmdRead || t.request.type == nbd::kCmdWrite;
    if (explicit_reg && data && t.request.length > 0 && !t.registered) {  // not if resent
      t.registered = true;
      chain_registered_.push_back(tag);
    }
    if (t.request.type == nbd::kCmdWrite) {
      ++t.buffer_users;  // until its payload is out
      if (config_.plan.zero_copy) {
        SendOp op;
        op.fixed = true;
        op.op = config_.plan.WriteOpFor(t.request.length);
        op.tag = tag;
        op.len = t.request.length;
        chain_.push_back(op);
      } else {
        send_iov_.push_back({CopyBuffer(tag), t.request.length});
        chain_.back().iov_end++;
        send_batch_.push_back(tag);
        chain_.back().batch_end++;
      }
    }
    if (alone_tag_ == tag) break;
  }
  SubmitChain(/*with_registers=*/true);
}

// Queues every op of the chain not sent yet, linked, in one go: the first
// time behind the REGISTER_IO_BUFs of its requests.
void QueueWorker::SubmitChain(bool with_registers) {
  io_uring* ring = ring_->get();
  size_t left = 0;
  for (const SendOp& op : chain_) left += op.done ? 0 : 1;
  const size_t registers = with_registers ? chain_registered_.size() : 0;
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
  chain_in_kernel_ = left;
  for (size_t i = 0; i < registers; ++i) {
    const uint16_t tag = chain_registered_[i];
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    queue_->Prep(sqe, ublk::kIoRegisterIoBuf, tag, 0, /*addr=*/tag,  // the slot
                 worker_ops::BufRegData(tag, /*unregister=*/false));
    // A failed registration cancels the sends after it.
    sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
  }
  const int fd = socket_.get();
  for (size_t i = 0; i < chain_.size(); ++i) {
    SendOp& op = chain_[i];
    if (op.done) continue;
    // More follows in this chain: let TCP fill whole segments rather than
    // push each op's bytes on their own.
    const int flags = MSG_NOSIGNAL | MSG_WAITALL | (left > 1 ? MSG_MORE : 0);
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    if (!op.fixed) {
      op.msg = {};
      op.msg.msg_iov = send_iov_.data() + op.iov_begin;
      op.msg.msg_iovlen = op.iov_end - op.iov_begin;
      io_uring_prep_sendmsg(sqe, fd, &op.msg, flags);
    } else {
      // A kernel buffer is addressed by its offset from the start.
      void* at = reinterpret_cast<void*>(uintptr_t{op.offset});
      switch (op.op) {
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
    io_uring_sqe_set_data64(sqe, SendData(op.tag, static_cast<uint16_t>(i)));
    if (--left > 0) sqe->flags |= IOSQE_IO_LINK;
  }
}

// `sent` bytes of `op` went out; on a short send the rest goes again.
void QueueWorker::Advance(SendOp& op, size_t sent) {
  if (op.fixed) {
    op.offset += static_cast<uint32_t>(sent);
    op.len -= static_cast<uint32_t>(sent);
    op.done = op.len == 0;
    if (op.done) ReleaseBuffer(op.tag);
    return;
  }
  while (op.iov_begin < op.iov_end && sent >= send_iov_[op.iov_begin].iov_len) {
    sent -= send_iov_[op.iov_begin].iov_len;
    ++op.iov_begin;
  }
  if (op.iov_begin < op.iov_end) {
    iovec& partial = send_iov_[op.iov_begin];
    partial.iov_base = static_cast<uint8_t*>(partial.iov_base) + sent;
    partial.iov_len -= sent;
  }
  op.done = op.iov_begin == op.iov_end;
}

void QueueWorker::OnSend(const io_uring_cqe& cqe) {
  const uint16_t tag = TagOf(cqe.user_data);
  if ((cqe.flags & IORING_CQE_F_NOTIF) != 0) {
    // SEND_ZC's second completion: the pages are the request's again.
    ReleaseBuffer(tag);
    return;
  }
  const size_t index = SendIndexOf(cqe.user_data);
  if (index >= chain_.size() || chain_in_kernel_ == 0) {
    LOG(DFATAL) << "queue " << config_.q_id << ": send completion outside a chain";
    return;
  }
  --chain_in_kernel_;
  SendOp& op = chain_[index];
  const int res = cqe.res;
  if (op.fixed && op.op == WriteOp::kSendZc && (cqe.flags & IORING_CQE_F_MORE) != 0) {
    ++tags_[tag].buffer_users;  // until the notification, which comes in any case
  }
  if (connected_) {
    if (res == 0) {
      FailConnection(absl::UnavailableError("a send to the NBD server made no progress"));
    } else if (res < 0 && res != -ECANCELED) {  // cancelled: an earlier op came up short
      FailConnection(ErrnoToStatus(-res, "send to the NBD server"));
    } else if (res > 0) {
      Advance(op, static_cast<size_t>(res));
    }
  }
  if (chain_in_kernel_ > 0) return;
  if (connected_) {
    for (const SendOp& o : chain_) {
      if (!o.done) {
        SubmitChain(/*with_registers=*/false);  // a short send: the rest again, in order
        return;
      }
    }
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
  for (const SendOp& o : chain_) {
    if (o.done) continue;
    auto unsent = [this](uint16_t tag) {
      Tag& t = tags_[tag];
      if (t.reply_waiting && t.request.type == nbd::kCmdWrite && t.reply_result >= 0) {
        LOG(ERROR) << "queue " << config_.q_id << " tag " << tag
                   << ": the server acknowledged a write whose data was not all sent; failing "
                      "it with EIO";
        t.reply_result = -EIO;
      }
    };
    if (o.fixed) {
      unsent(o.tag);
    } else {
      for (uint32_t i = o.batch_begin; i < o.batch_end; ++i) unsent(send_batch_[i]);
    }
  }
  for (const SendOp& o : chain_) {
    if (o.fixed && !o.done) ReleaseBuffer(o.tag);
  }
  for (uint16_t t : send_batch_) ReleaseBuffer(t);
  chain_.clear();
  chain_registered_.clear();
  send_batch_.clear();
}

}  // namespace ublkgw::engine
