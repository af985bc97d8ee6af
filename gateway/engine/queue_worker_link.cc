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

void QueueWorker::SetLink(Link link, const absl::Status& why) {
  {
    absl::MutexLock lock(&error_mu_);
    connection_error_ = link == Link::kUp ? "" : std::string(why.message());
  }
  link_.store(link, std::memory_order_release);
}

void QueueWorker::FailConnection(const absl::Status& why) {
  if (!connected_) return;
  connected_ = false;
  down_since_ns_ = now_ns_;
  drained_ = false;
  quick_failures_ = Since(up_since_ns_, now_ns_) < absl::Seconds(1) ? quick_failures_ + 1 : 0;
  const bool retry = config_.connector && config_.reconnect.reconnect_deadline > absl::ZeroDuration() &&
                     !abort_.load();
  LOG(ERROR) << "queue " << config_.q_id << ": dropping the NBD connection: " << why
             << (retry ? "; reconnecting, requests wait" : "; its I/O fails with EIO");
  if (!retry) failing_io_ = true;
  SetLink(retry ? Link::kReconnecting : Link::kFailingIo, why);
  // Pending RECV and sends complete with errors; Recover waits for them
  // before anything is sent again.
  AbortSocket();
  if (retry) StartReconnecting(quick_failures_);
}

void QueueWorker::Fault(absl::string_view what) {
  LOG(ERROR) << "queue " << config_.q_id << ": internal error: " << what
             << "; failing this queue's I/O with EIO (other volumes are not affected)";
  abort_.store(true);
  failing_io_ = true;
  StopReconnecting();
  const absl::Status why = absl::InternalError(absl::StrCat("internal error: ", what));
  if (connected_) {
    FailConnection(why);
  } else {
    SetLink(Link::kFailingIo, why);
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

// The eventfd was written: a forced detach, or a new connection is ready
// (Recover takes it). Reads it again for the next time.
void QueueWorker::OnWake() {
  if (abort_.load()) {
    failing_io_ = true;
    StopReconnecting();
    if (connected_) {
      FailConnection(absl::CancelledError("forced detach"));
    } else {
      SetLink(Link::kFailingIo, absl::CancelledError("forced detach"));
    }
  }
  io_uring_sqe* wake = Sqe();
  io_uring_prep_read(wake, wake_fd_.get(), &wake_value_, sizeof(wake_value_), 0);
  io_uring_sqe_set_data64(wake, UserData(Op::kWake));
}

// Called every loop turn while the connection is down.
void QueueWorker::Recover() {
  if (!failing_io_ && config_.reconnect.reconnect_deadline > absl::ZeroDuration() &&
      Since(down_since_ns_, now_ns_) >= config_.reconnect.reconnect_deadline) {
    failing_io_ = true;
    const std::string why = absl::StrCat("no connection for ",
                                         absl::FormatDuration(config_.reconnect.reconnect_deadline),
                                         " (the reconnect deadline): I/O fails with EIO",
                                         config_.reconnect.keep_reconnecting
                                             ? " until the server is back"
                                             : "; reconnecting has stopped");
    LOG(ERROR) << "queue " << config_.q_id << ": " << why;
    SetLink(Link::kFailingIo, absl::UnavailableError(why));
    if (!config_.reconnect.keep_reconnecting) StopReconnecting();
  }
  // Requests never sent hold nothing of the old connection: they fail at
  // once; those sent on it wait for the drain.
  auto fail_waiting = [this] {
    while (failing_io_ && !send_queue_.empty()) {
      const uint16_t tag = send_queue_.front();
      send_queue_.pop_front();
      Complete(tag, -EIO);
    }
  };
  fail_waiting();
  if (!drained_) {
    // Nothing may be sent again while an op of the old connection could
    // still touch its buffer or its stream.
    if (chain_in_kernel_ > 0 || !chain_.empty() || recv_in_flight_) return;
    for (const Tag& t : tags_) {
      if (t.state == TagState::kInFlight && !t.reply_waiting && t.buffer_users > 0) return;
    }
    drained_ = true;
    RequeueUnanswered();
    fail_waiting();
  }
  if (abort_.load()) return;
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
  std::vector<uint16_t> again;
  for (uint16_t tag = 0; tag < config_.depth; ++tag) {
    const Tag& t = tags_[tag];
    if (t.state == TagState::kInFlight && !t.reply_waiting) again.push_back(tag);
  }
  std::sort(again.begin(), again.end(),
            [this](uint16_t a, uint16_t b) { return tags_[a].send_seq > tags_[b].send_seq; });
  alone_tag_ = -1;
  for (uint16_t tag : again) {  // newest first, each to the front
    Tag& t = tags_[tag];
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
    t.state = TagState::kQueued;
    t.fill_errno = 0;
    send_queue_.push_front(tag);
  }
  // The reply being parsed, if any, is gone with its connection.
  reader_.Reset();
  rx_head_ = rx_tail_ = 0;
}

void QueueWorker::InstallSocket(UniqueFd socket) {
  if (reconnect_thread_.joinable()) reconnect_thread_.join();  // it is done
  const absl::Duration down = Since(down_since_ns_, now_ns_);
  socket_ = std::move(socket);
  connected_ = true;
  up_since_ns_ = now_ns_;
  failing_io_ = false;
  stats_.OnReconnect();
  SetLink(Link::kUp, absl::OkStatus());
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
  for (const Tag& t : tags_) {
    if (t.state == TagState::kInFlight && !t.reply_waiting &&
        Since(t.sent_ns, now_ns_) > timeout) {
      FailConnection(absl::DeadlineExceededError(
          absl::StrCat("no reply from the NBD server within ", absl::FormatDuration(timeout),
                       " (the I/O timeout)")));
      return;
    }
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
    failing_io_ = true;
    SetLink(Link::kFailingIo, absl::ResourceExhaustedError("no thread to reconnect with"));
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
