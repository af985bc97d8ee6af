#include "engine/queue_worker.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "engine/queue_worker_ops.h"
#include "glog/logging.h"

namespace ublkgw::engine {

using worker_ops::kMaxBatch;
using worker_ops::Op;
using worker_ops::OpOf;
using worker_ops::TagOf;
using worker_ops::UserData;

namespace {

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000 + uint64_t(ts.tv_nsec);
}

}  // namespace

QueueWorker::QueueWorker(QueueConfig config, std::unique_ptr<UblkQueue> queue,
                         nbd::ExportInfo info, UniqueFd socket)
    : config_(config),
      info_(std::move(info)),
      socket_(std::move(socket)),
      queue_(std::move(queue)),
      // Reads whose data must not meet a wide RECV (ReadsKeptFromWideRecvs):
      // on zero copy every read, on the copy path the large ones.
      tags_(config_.depth, config_.plan.zero_copy ? 1 : kDirectPayload),
      conn_(config_.connector && config_.reconnect.reconnect_deadline > absl::ZeroDuration()),
      chain_(2 * kMaxBatch),
      reader_(info_.mode, config_.depth),
      size_limit_(info_.size) {
  wake_fd_.Reset(eventfd(0, EFD_CLOEXEC));
  stop_fd_.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
}

QueueWorker::~QueueWorker() {
  StopReconnecting();
  if (reconnect_thread_.joinable()) reconnect_thread_.join();
  ring_.reset();
  if (buffers_ != nullptr) munmap(buffers_, size_t{config_.depth} * config_.max_io_bytes);
}

std::string QueueWorker::connection_error() const {
  absl::MutexLock lock(&error_mu_);
  return connection_error_;
}

void QueueWorker::Abort() {
  orders_.fetch_or(kOrderAbort);
  Wake();
}

void QueueWorker::ExitNow() {
  orders_.fetch_or(kOrderExit);
  Wake();
}

void QueueWorker::Leave() {
  orders_.fetch_or(kOrderLeave);
  Wake();
}

absl::Status QueueWorker::WaitReady(absl::Duration timeout) {
  if (!ready_.WaitForNotificationWithTimeout(timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat("queue ", config_.q_id, " did not start within ", absl::FormatDuration(timeout)));
  }
  return ready_status_;
}

io_uring_sqe* QueueWorker::Sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_->get());
  if (sqe == nullptr) {
    // The ring is sized for every tag's operations; flush and retry.
    io_uring_submit(ring_->get());
    stats_.OnRingEnter();
    sqe = io_uring_get_sqe(ring_->get());
  }
  if (sqe == nullptr) {
    // The ring is sized for everything a queue can have in flight: a bug,
    // or a kernel that will not take submissions. Nothing more can be
    // done on this queue; a spare SQE keeps the caller's code simple.
    Fault("no free submission queue entry");
    ring_broken_ = true;
    if (first_error_.ok()) first_error_ = absl::InternalError("the queue's ring takes no submissions");
    sqe = spare_sqe_;
  }
  return sqe;
}

// Shared by the send chain, the direct RECV and the hole fill: every op
// on a request's pages goes through here.
void QueueWorker::Lend(io_uring_sqe* sqe, uint16_t tag) {
  if (!Fused()) return;
  if (!queue_->Fuse(sqe, tag, UserData(Op::kFusedSlave, tag))) {
    const uint64_t user_data = sqe->user_data;
    const unsigned opcode = sqe->opcode;
    io_uring_prep_nop(sqe);  // completes as the op would have, with nothing moved
    io_uring_sqe_set_data64(sqe, user_data);
    Fault(absl::StrCat("tag ", tag, ": an operation (opcode ", opcode,
                       ") that cannot be a fused command's slave"));
  }
}

absl::Status QueueWorker::Setup() {
  if (!wake_fd_.valid() || !stop_fd_.valid()) return ErrnoToStatus(errno, "eventfd");
  // Each tag can have a ublk command in flight, plus its send ops (a header
  // and a payload, and a hole fill), the RECV and the wake-up poll; a send
  // chain of a whole batch must fit at once.
  const unsigned entries = std::max<unsigned>(256, config_.depth * 4 + 8);
  // A fused command is a 128-byte SQE: the master, then its slave.
  const unsigned sqe128 = Fused() ? IORING_SETUP_SQE128 : 0;
  auto ring =
      Ring::Create(entries, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | sqe128);
  if (!ring.ok()) {
    // Kernels before 6.1 lack DEFER_TASKRUN; the data path works without.
    ring = Ring::Create(entries, sqe128);
  }
  if (!ring.ok()) return ring.status();
  ring_ = std::make_unique<Ring>(*std::move(ring));
  // A registered ring fd spares every io_uring_enter its fd lookup
  // (liburing then enters with IORING_ENTER_REGISTERED_RING, 5.18+); a
  // kernel without it only keeps that cost.
  (void)io_uring_register_ring_fd(ring_->get());
  if (absl::Status s = queue_->Open(ring_->get(), Batch()); !s.ok()) return s;
  if (config_.plan.zero_copy) {
    // One empty slot per tag: the kernel fills slot `tag` with a request's
    // pages when it hands us the request, and empties it at its commit.
    // The fused path uses none (it costs nothing; a host test's fake
    // kernel lends its pages through them).
    if (int r = io_uring_register_buffers_sparse(ring_->get(), config_.depth); r < 0) {
      return ErrnoToStatus(-r, "registering the queue's fixed-buffer table");
    }
    if (config_.max_io_bytes > worker_ops::kFillMaxBytes) {
      return absl::InvalidArgumentError("requests too large for the zero-copy path");
    }
    zero_fd_.Reset(open("/dev/zero", O_RDONLY | O_CLOEXEC));
    if (!zero_fd_.valid()) return ErrnoToStatus(errno, "/dev/zero");
  } else {
    void* mem = mmap(nullptr, size_t{config_.depth} * config_.max_io_bytes,
                     PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return ErrnoToStatus(errno, "mmap of the queue's buffers");
    buffers_ = static_cast<uint8_t*>(mem);
  }
  rx_buf_.resize(kStagingBytes);
  return absl::OkStatus();
}

absl::Status QueueWorker::Run() {
  if (absl::Status s = Setup(); !s.ok()) {
    ready_status_ = s;
    ready_.Notify();
    return s;
  }
  SubmitFetchAll();
  ArmRecv();
  OnWake();  // arms the first wake-up read
  // The FETCH_REQs must be in the kernel before START_DEV (which waits for
  // every queue): submit now, and say whether it worked.
  const int submitted = io_uring_submit(ring_->get());
  if (submitted < 0) ready_status_ = ErrnoToStatus(-submitted, "submitting FETCH_REQs");
  ready_.Notify();
  if (submitted < 0) return ready_status_;

  while (tags_.live() > 0 && !ring_broken_) {
    // Wakes at least once a second, for the I/O timeout and the reconnect
    // deadline.
    __kernel_timespec tick{.tv_sec = 1, .tv_nsec = 0};
    io_uring_cqe* first;
    const int ret = io_uring_submit_and_wait_timeout(ring_->get(), &first, 1, &tick, nullptr);
    stats_.OnRingEnter();
    if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
      if (first_error_.ok()) first_error_ = ErrnoToStatus(-ret, "io_uring_submit_and_wait_timeout");
      break;
    }
    now_ns_ = MonotonicNs();
    TakeOrders();
    if (conn_.state() == ConnState::kExited) break;
    io_uring_cqe* cqe;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(ring_->get(), head, cqe) {
      HandleCqe(*cqe);
      ++seen;
    }
    io_uring_cq_advance(ring_->get(), seen);
    if (conn_.socket_live()) {
      CheckReplyTimeout();
    } else if (!conn_.over()) {
      Recover();
    }
    if (conn_.state() == ConnState::kLeaving) MaybeLeave();
    if (conn_.over()) break;
    MaybeSend();
    if (Batch()) {
      MaybeRearmFetch();
      FlushCommits();
    }
  }
  // Leaving for the next daemon, which is issued what had no reply here:
  // commits prepared in the last turn complete their requests now, rather
  // than have the next daemon issued them again; and nothing still queued
  // on this connection may reach the server after it.
  if (conn_.state() == ConnState::kLeft) {
    FlushCommits();
    io_uring_submit(ring_->get());
  }
  if (conn_.over()) AbortSocket();
  StopReconnecting();
  if (reconnect_thread_.joinable()) reconnect_thread_.join();
  return first_error_;
}

void QueueWorker::HandleCqe(const io_uring_cqe& cqe) {
  if (TagOf(cqe.user_data) >= config_.depth) {
    Fault(absl::StrCat("a completion for tag ", TagOf(cqe.user_data), " of a queue of depth ",
                       config_.depth));
    return;
  }
  switch (OpOf(cqe.user_data)) {
    case Op::kIoCmd:
      OnIoCmd(TagOf(cqe.user_data), cqe.res);
      return;
    case Op::kSend:
      OnSend(cqe);
      return;
    case Op::kZeroFill:
      OnZeroFill(cqe.user_data, cqe.res);
      return;
    case Op::kBufReg:
      OnBufReg(cqe.user_data, cqe.res);
      return;
    case Op::kRecv:
      OnRecv(cqe.res);
      return;
    case Op::kWake:
      OnWake();
      return;
    case Op::kCancel:
      return;  // it found nothing: the RECV had completed (OnRecv)
    case Op::kBatchPrep:
      OnPrepBatch(cqe.res);
      return;
    case Op::kBatchCommit:
      OnCommitBatch(cqe.user_data, cqe.res);
      return;
    case Op::kBatchFetch:
      OnFetchBatch(cqe);
      return;
    case Op::kFusedSlave:
      // A slave that failed, whose master completes with the same result;
      // or a SEND_ZC slave's result (the master's carries it too) or its
      // notification (the kernel holds the request's pages until then, so
      // the commit need not wait for it).
      VLOG(2) << "queue " << config_.q_id << " tag " << TagOf(cqe.user_data)
              << ": a fused command's slave completed with " << cqe.res;
      return;
  }
  LOG(ERROR) << "queue " << config_.q_id << ": unknown completion 0x" << std::hex << cqe.user_data;
}

}  // namespace ublkgw::engine
