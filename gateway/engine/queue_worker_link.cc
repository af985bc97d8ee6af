// QueueWorker's connection: losing it, draining what used it, reconnecting
// with backoff on a thread of its own, and sending again what had no reply.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "engine/queue_worker.h"
#include "engine/queue_worker_ops.h"
#include "glog/logging.h"
#include "nbd/wire.h"

namespace ublkgw::engine {

using worker_ops::Op;
using worker_ops::UserData;

namespace {

absl::Duration Since(uint64_t then_ns, uint64_t now_ns) {
  return absl::Nanoseconds(static_cast<int64_t>(now_ns - then_ns));
}

}  // namespace

void QueueWorker::PublishLink(const absl::Status& why) {
  const Link link = conn_.link();
  {
    absl::MutexLock lock(&error_mu_);
    connection_error_ = link == Link::kUp ? "" : std::string(why.message());
  }
  link_.store(link, std::memory_order_release);
}

void QueueWorker::FailConnection(const absl::Status& why) {
  if (!conn_.socket_live()) return;
  const bool leaving = conn_.state() == ConnState::kLeaving;
  const bool retry = conn_.Lose(now_ns_);
  AbortSocket();  // pending RECV and sends complete with errors
  if (leaving) {
    LOG(INFO) << "queue " << config_.q_id << ": leaving; the connection failed (" << why
              << "); the next daemon sends what had no reply";
    return;
  }
  LOG(ERROR) << "queue " << config_.q_id << ": dropping the NBD connection: " << why
             << (retry ? "; reconnecting, requests wait" : "; its I/O fails with EIO");
  PublishLink(why);
  // Recover waits for the socket's ops before anything is sent again.
  if (retry) StartReconnecting(conn_.quick_failures());
}

void QueueWorker::CloseForGood(const absl::Status& why) {
  StopReconnecting();
  if (conn_.Close()) {
    LOG(ERROR) << "queue " << config_.q_id << ": dropping the NBD connection: " << why
               << "; its I/O fails with EIO";
    AbortSocket();
  }
  PublishLink(why);
}

void QueueWorker::Fault(absl::string_view what) {
  LOG(ERROR) << "queue " << config_.q_id << ": internal error: " << what
             << "; failing this queue's I/O with EIO (other volumes are not affected)";
  CloseForGood(absl::InternalError(absl::StrCat("internal error: ", what)));
}

void QueueWorker::TakeOrders() {
  // Every turn: a plain load first, so the common case writes nothing.
  if (orders_.load(std::memory_order_relaxed) == 0) return;
  const uint8_t orders = orders_.exchange(0);
  if ((orders & kOrderExit) != 0) conn_.ExitNow();
  if ((orders & kOrderAbort) != 0) CloseForGood(absl::CancelledError("forced detach"));
  if ((orders & kOrderLeave) != 0 && !conn_.over()) {
    leave_on_wire_ = tags_.on_wire();
    conn_.Leave(now_ns_, kLeaveGrace);
    if (conn_.over()) {
      LOG(INFO) << "queue " << config_.q_id
                << ": leaving while disconnected; the next daemon sends its requests";
    }
  }
}

void QueueWorker::MaybeLeave() {
  const int64_t awaiting = tags_.on_wire();
  if (!conn_.MaybeLeft(now_ns_, awaiting)) return;
  if (awaiting == 0) {
    LOG(INFO) << "queue " << config_.q_id << ": leaving with every request it sent answered ("
              << leave_on_wire_ << " in flight when told to leave)";
  } else {
    LOG(WARNING) << "queue " << config_.q_id << ": leaving with " << awaiting
                 << " requests unanswered after " << absl::FormatDuration(kLeaveGrace)
                 << "; the next daemon sends them again";
  }
}

void QueueWorker::AbortSocket() {
  ::shutdown(socket_.get(), SHUT_RDWR);
  // Shutdown keeps data already queued, and a SEND_ZC's pages stay pinned
  // (its notification pending, the block request unfinished) until a peer
  // that may never read again acknowledges them; and a request still queued
  // could reach the server after it was sent again on a new connection.
  // Disconnecting drops the send queue, so every notification comes now.
  sockaddr unspec{};
  unspec.sa_family = AF_UNSPEC;
  (void)::connect(socket_.get(), &unspec, sizeof(unspec));
}

void QueueWorker::Wake() {
  const uint64_t one = 1;
  (void)!write(wake_fd_.get(), &one, sizeof(one));
}

// The eventfd was written (an order, or a new connection is ready): the
// loop turn that this completion ends takes them. Reads it again for the
// next time.
void QueueWorker::OnWake() {
  io_uring_sqe* wake = Sqe();
  io_uring_prep_read(wake, wake_fd_.get(), &wake_value_, sizeof(wake_value_), 0);
  io_uring_sqe_set_data64(wake, UserData(Op::kWake));
}

// Requests never sent hold nothing of the old connection: once I/O fails
// they fail at once; those sent on it wait for the drain.
void QueueWorker::FailWaiting() {
  while (conn_.fails_io() && !send_queue_.empty()) {
    const uint16_t tag = send_queue_.front();
    send_queue_.pop_front();
    Complete(tag, -EIO);
  }
}

void QueueWorker::Recover() {
  const ReconnectPolicy& policy = config_.reconnect;
  if (conn_.CheckDeadline(now_ns_, policy.reconnect_deadline, policy.keep_reconnecting)) {
    const std::string why = absl::StrCat(
        "no connection for ", absl::FormatDuration(policy.reconnect_deadline),
        " (the reconnect deadline): I/O fails with EIO",
        policy.keep_reconnecting ? " until the server is back" : "; reconnecting has stopped");
    LOG(ERROR) << "queue " << config_.q_id << ": " << why;
    if (!policy.keep_reconnecting) StopReconnecting();
    PublishLink(absl::UnavailableError(why));
  }
  FailWaiting();
  if (conn_.draining()) {
    // Nothing may be sent again while an op of the old connection could
    // still touch its buffer or its stream.
    if (chain_.in_kernel() > 0 || !chain_.empty() || recv_in_flight_ ||
        tags_.AnyUnansweredBufferInUse()) {
      return;
    }
    conn_.Drained();
    RequeueUnanswered();
    FailWaiting();
  }
  if (!conn_.accepts_socket()) return;
  UniqueFd socket;
  {
    absl::MutexLock lock(&link_mu_);
    socket = std::move(new_socket_);
  }
  if (socket.valid()) InstallSocket(std::move(socket));
}

// Every request sent on the lost connection without a full reply goes back
// to the front of the queue, in the order it was sent; one sent too often
// fails.
void QueueWorker::RequeueUnanswered() {
  const std::vector<uint16_t> again = tags_.UnansweredBySend();
  for (auto it = again.rbegin(); it != again.rend(); ++it) {  // newest first, each to the front
    const uint16_t tag = *it;
    const Tag& t = tags_[tag];
    if (t.register_failed) {
      Complete(tag, -EIO);  // logged by OnBufReg
      continue;
    }
    if (t.attempts >= config_.reconnect.max_attempts) {
      LOG(ERROR) << "queue " << config_.q_id << " tag " << tag << ": failing "
                 << nbd::CommandName(t.request.type) << " of " << t.request.length << " bytes at "
                 << t.request.offset << " with EIO: sent " << t.attempts
                 << " times, and each time the connection failed before its reply";
      Complete(tag, -EIO);
      continue;
    }
    tags_.Requeue(tag);
    send_queue_.push_front(tag);
  }
  // The reply being parsed, if any, is gone with its connection.
  reader_.Reset();
  rx_head_ = rx_tail_ = 0;
}

void QueueWorker::InstallSocket(UniqueFd socket) {
  if (reconnect_thread_.joinable()) reconnect_thread_.join();  // it is done
  const absl::Duration down = Since(conn_.down_since_ns(), now_ns_);
  if (!conn_.Up(now_ns_)) return;  // closed meanwhile: the socket just closes
  socket_ = std::move(socket);
  stats_.OnReconnect();
  PublishLink(absl::OkStatus());
  LOG(WARNING) << "queue " << config_.q_id << ": reconnected after "
               << absl::FormatDuration(absl::Trunc(down, absl::Milliseconds(1)))
               << "; sending the " << send_queue_.size() << " waiting request(s)";
  ArmRecv();
}

// Once a second: a request without a reply for longer than the I/O timeout
// means a stalled server (or path): the connection is dropped.
void QueueWorker::CheckReplyTimeout() {
  const absl::Duration timeout = config_.reconnect.io_timeout;
  if (timeout <= absl::ZeroDuration() || now_ns_ < next_timeout_check_ns_) return;
  next_timeout_check_ns_ = now_ns_ + 1000000000;
  const auto timeout_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(timeout));
  if (now_ns_ > timeout_ns && tags_.AnyUnansweredSince(now_ns_ - timeout_ns)) {
    FailConnection(absl::DeadlineExceededError(
        absl::StrCat("no reply from the NBD server within ", absl::FormatDuration(timeout),
                     " (the I/O timeout)")));
  }
}

// `wait_first`: back off as if that many attempts had failed already.
void QueueWorker::StartReconnecting(int wait_first) {
  if (reconnect_thread_.joinable()) reconnect_thread_.join();  // a finished one
  {
    absl::MutexLock lock(&link_mu_);
    stop_reconnecting_ = false;
    new_socket_.Reset();
    uint64_t stops;
    (void)!read(stop_fd_.get(), &stops, sizeof(stops));  // the last stop's, if any
  }
  try {
    reconnect_thread_ = std::thread([this, wait_first] { ReconnectLoop(wait_first); });
  } catch (const std::system_error& e) {
    LOG(ERROR) << "queue " << config_.q_id << ": cannot start reconnecting (" << e.what()
               << "): its I/O fails with EIO";
    CloseForGood(absl::ResourceExhaustedError("no thread to reconnect with"));
  }
}

void QueueWorker::StopReconnecting() {
  absl::MutexLock lock(&link_mu_);
  stop_reconnecting_ = true;
  new_socket_.Reset();
  const uint64_t one = 1;
  (void)!write(stop_fd_.get(), &one, sizeof(one));
}

// The reconnect thread: tries until a connection to a compatible export is
// made, or it is told to stop, then wakes the worker.
void QueueWorker::ReconnectLoop(int wait_first) {
  pthread_setname_np(pthread_self(), absl::StrCat("ublkgw-rc", config_.q_id).c_str());
  absl::BitGen random;
  const uint64_t device_size = size_limit_.load(std::memory_order_relaxed);
  if (wait_first > 0) {
    absl::MutexLock lock(&link_mu_);
    link_mu_.AwaitWithTimeout(
        absl::Condition(&stop_reconnecting_),
        BackoffDelay(config_.reconnect, wait_first, absl::Uniform(random, 0.0, 1.0)));
    if (stop_reconnecting_) return;
  }
  for (int attempt = 1 + wait_first;; ++attempt) {
    absl::StatusOr<UniqueFd> socket = config_.connector(device_size, stop_fd_.get());
    absl::MutexLock lock(&link_mu_);
    if (stop_reconnecting_) return;
    if (socket.ok()) {
      new_socket_ = *std::move(socket);
      break;
    }
    const absl::Duration wait =
        BackoffDelay(config_.reconnect, attempt, absl::Uniform(random, 0.0, 1.0));
    LOG(WARNING) << "queue " << config_.q_id << ": reconnect attempt " << attempt
                 << " failed: " << socket.status() << "; next in "
                 << absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(1)));
    if (link_.load(std::memory_order_acquire) == Link::kReconnecting) {  // not past the deadline
      absl::MutexLock error_lock(&error_mu_);
      connection_error_ = absl::StrCat("reconnecting (attempt ", attempt,
                                       " failed: ", socket.status().message(), ")");
    }
    link_mu_.AwaitWithTimeout(absl::Condition(&stop_reconnecting_), wait);
    if (stop_reconnecting_) return;
  }
  Wake();
}

}  // namespace ublkgw::engine
