// QueueWorker: a request's life on the ublk side. The per-tag commands
// that fetch requests and commit results (batched ones are in
// queue_worker_batch.cc), a request's start (its descriptor mapped to an
// NBD request and queued for sending), and its end (the reply's result
// committed once nothing uses its buffer any more).
#include <cerrno>
#include <optional>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "engine/queue_worker.h"
#include "engine/queue_worker_ops.h"
#include "engine/request_mapping.h"
#include "glog/logging.h"
#include "nbd/wire.h"

namespace ublkgw::engine {

using worker_ops::Op;
using worker_ops::TagOf;
using worker_ops::UserData;

namespace {

std::optional<OpKind> KindOf(const ublk::ublksrv_io_desc& iod) {
  switch (ublk::IodOp(iod)) {
    case ublk::kIoOpRead:
      return OpKind::kRead;
    case ublk::kIoOpWrite:
      return OpKind::kWrite;
    case ublk::kIoOpFlush:
      return OpKind::kFlush;
    case ublk::kIoOpDiscard:
      return OpKind::kDiscard;
    case ublk::kIoOpWriteZeroes:
      return OpKind::kWriteZeroes;
  }
  return std::nullopt;  // an operation ublkgw never enables
}

}  // namespace

void QueueWorker::PrepIoCmd(uint32_t cmd_op, uint16_t tag, int32_t result) {
  io_uring_sqe* sqe = Sqe();
  if (config_.plan.zero_copy) {
    queue_->Prep(sqe, cmd_op, tag, result, 0, UserData(Op::kIoCmd, tag));
    if (config_.plan.registration == BufferRegistration::kAuto) {
      ublk::SetAutoBufReg(sqe, tag);  // the next request's pages go to slot `tag`
    }
  } else {
    queue_->Prep(sqe, cmd_op, tag, result, reinterpret_cast<uintptr_t>(CopyBuffer(tag)),
                 UserData(Op::kIoCmd, tag));
  }
}

void QueueWorker::SubmitFetchAll() {
  if (Batch()) {
    PrepAndFetchBatch();
    return;
  }
  for (uint16_t tag = 0; tag < config_.depth; ++tag) PrepIoCmd(ublk::kIoFetchReq, tag, 0);
}

void QueueWorker::OnIoCmd(uint16_t tag, int res) {
  if (res == ublk::kIoResOk) {
    StartRequest(tag);
    return;
  }
  // UBLK_IO_RES_ABORT (-ENODEV): the device is stopping. Anything else is
  // an error of the command itself; either way the tag is done.
  if (res != -ENODEV) {
    LOG(ERROR) << "queue " << config_.q_id << " tag " << tag << ": ublk command failed: " << res;
    if (first_error_.ok()) first_error_ = ErrnoToStatus(-res, "ublk I/O command");
  }
  if (!tags_.Abort(tag)) {
    Fault(absl::StrCat("tag ", tag, " aborted while not fetching (",
                       static_cast<int>(tags_[tag].state), ")"));
  }
}

void QueueWorker::StartRequest(uint16_t tag) {
  if (!tags_.Arrive(tag, queue_->Desc(tag), now_ns_)) {
    Fault(absl::StrCat("a request for tag ", tag, ", which the kernel did not owe one (",
                       static_cast<int>(tags_[tag].state), ")"));
    return;
  }
  Tag& t = tags_[tag];
  t.kind = KindOf(t.iod);
  if (t.kind) stats_.OnStart();
  info_.size = size_limit_.load(std::memory_order_relaxed);
  MappedRequest mapped = MapRequest(t.iod, info_);
  if (mapped.error != 0) {
    Complete(tag, mapped.error);
    return;
  }
  if (conn_.fails_io()) {
    Complete(tag, -EIO);
    return;
  }
  const bool data = mapped.request.type == nbd::kCmdRead || mapped.request.type == nbd::kCmdWrite;
  if (data && mapped.request.length > config_.max_io_bytes) {
    // The kernel keeps requests within max_sectors; never trust it with
    // our buffer's bounds.
    Complete(tag, -EINVAL);
    return;
  }
  if (data && config_.plan.zero_copy &&
      config_.plan.registration == BufferRegistration::kAuto &&
      (t.iod.op_flags & ublk::kIoFNeedRegBuf) != 0) {
    // The kernel could not put the pages in slot `tag` (it was not empty):
    // a bug of ours; fail the request rather than guess.
    LOG(ERROR) << "queue " << config_.q_id << " tag " << tag
               << ": the kernel did not register the request's buffer";
    Complete(tag, -EIO);
    return;
  }
  tags_.Queue(tag, mapped.request);  // kOwned, from Arrive
  send_queue_.push_back(tag);
}

void QueueWorker::Complete(uint16_t tag, int32_t result) {
  Tag& t = tags_[tag];
  if (!tags_.Commit(tag)) {
    Fault(absl::StrCat("a commit of tag ", tag, ", which holds no request (",
                       static_cast<int>(t.state), ")"));
    return;
  }
  if (t.kind) {
    stats_.OnComplete(*t.kind, uint64_t{t.iod.nr_sectors} << 9, now_ns_ - t.start_ns, result < 0);
  }
  if (t.registered) {
    // Empty slot `tag` before the commit, linked so the commit follows it
    // (even if it fails: a hard link), and in one submit with it.
    t.registered = false;
    if (io_uring_sq_space_left(ring_->get()) < 2) {
      io_uring_submit(ring_->get());
      stats_.OnRingEnter();
    }
    io_uring_sqe* sqe = Sqe();
    queue_->Prep(sqe, ublk::kIoUnregisterIoBuf, tag, 0, /*addr=*/tag,
                 worker_ops::BufRegData(tag, /*unregister=*/true));
    sqe->flags |= IOSQE_IO_HARDLINK | IOSQE_CQE_SKIP_SUCCESS;
  }
  if (Batch()) {
    AppendBatchElem(&pending_commits_, tag, result);  // FlushCommits sends it this turn
    return;
  }
  PrepIoCmd(ublk::kIoCommitAndFetchReq, tag, result);
}

void QueueWorker::OnBufReg(uint64_t user_data, int res) {
  // Only failures complete (IOSQE_CQE_SKIP_SUCCESS).
  const uint16_t tag = TagOf(user_data);
  Tag& t = tags_[tag];
  if (worker_ops::IsUnregister(user_data)) {
    // The request is committed regardless; slot `tag` stays taken, so the
    // next request on it cannot be registered and fails with the connection.
    LOG(ERROR) << "queue " << config_.q_id << " tag " << tag << ": UNREGISTER_IO_BUF failed: "
               << res;
    return;
  }
  if (res == -ECANCELED) {
    t.registered = false;  // an earlier one failed: this one never ran; it goes again
  } else {
    // Whether the slot holds the buffer is unknown: keep `registered` (the
    // UNREGISTER at commit clears the slot if it does) and fail the request.
    LOG(ERROR) << "queue " << config_.q_id << " tag " << tag << ": REGISTER_IO_BUF failed: " << res;
    t.register_failed = true;
  }
  // Its linked sends were cancelled: the stream is cut mid-chain.
  FailConnection(ErrnoToStatus(res == -ECANCELED ? ECANCELED : -res,
                               absl::StrCat("registering the buffer of tag ", tag)));
}

void QueueWorker::ReleaseBuffer(uint16_t tag) {
  bool commit_due = false;
  if (!tags_.ReleaseBuffer(tag, &commit_due)) {
    Fault(absl::StrCat("tag ", tag, "'s buffer released more often than it was taken"));
    return;
  }
  if (commit_due) Complete(tag, tags_[tag].result);
}

void QueueWorker::FinishReply(uint16_t tag, int32_t server_result) {
  Tag& t = tags_[tag];
  const int32_t result = server_result != 0 ? server_result
                         : t.fill_errno != 0 ? t.fill_errno
                                             : SuccessResult(t.iod);
  if (!tags_.Answer(tag, result)) {  // the reader only finds requests in flight
    Fault(absl::StrCat("a reply to tag ", tag, ", which is not in flight"));
    return;
  }
  // The server may answer before our send (or SEND_ZC's notification) lets
  // go of a write's buffer, or while a hole is still being zeroed: then the
  // commit waits for the last of them (ReleaseBuffer).
  if (t.buffer_users == 0) Complete(tag, result);
}

}  // namespace ublkgw::engine
