#include "engine/queue_worker.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "engine/request_mapping.h"
#include "glog/logging.h"
#include "nbd/bytes.h"
#include "nbd/protocol_error.h"
#include "nbd/request_rules.h"
#include "nbd/wire.h"

namespace ublkgw::engine {

namespace {

// io_uring user_data: the kind of operation in the top byte, a tag below.
enum class Op : uint8_t { kIoCmd = 1, kSend = 2, kRecv = 3, kWake = 4 };
constexpr uint64_t UserData(Op op, uint16_t tag = 0) {
  return uint64_t{static_cast<uint8_t>(op)} << 56 | tag;
}
constexpr Op OpOf(uint64_t user_data) { return static_cast<Op>(user_data >> 56); }
constexpr uint16_t TagOf(uint64_t user_data) { return static_cast<uint16_t>(user_data); }

// At most this many requests share one SENDMSG (two iovecs each).
constexpr size_t kMaxBatch = 64;

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000 + uint64_t(ts.tv_nsec);
}

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

QueueWorker::QueueWorker(QueueConfig config, nbd::ExportInfo info, UniqueFd socket,
                         uint32_t generation)
    : config_(config),
      info_(std::move(info)),
      socket_(std::move(socket)),
      generation_(generation),
      size_limit_(info_.size) {
  wake_fd_.Reset(eventfd(0, EFD_CLOEXEC));
}

QueueWorker::~QueueWorker() {
  ring_.reset();
  if (buffers_ != nullptr) munmap(buffers_, size_t{config_.depth} * config_.max_io_bytes);
}

std::string QueueWorker::connection_error() const {
  absl::MutexLock lock(&error_mu_);
  return connection_error_;
}

void QueueWorker::Abort() {
  const uint64_t one = 1;
  (void)!write(wake_fd_.get(), &one, sizeof(one));
}

void QueueWorker::ExitNow() {
  exit_now_.store(true);
  Abort();
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
    sqe = io_uring_get_sqe(ring_->get());
  }
  CHECK(sqe != nullptr) << "queue " << config_.q_id << ": no free SQE";
  return sqe;
}

absl::Status QueueWorker::Setup() {
  if (!wake_fd_.valid()) return ErrnoToStatus(errno, "eventfd");
  // Each tag can have a ublk command in flight, plus one SENDMSG, one RECV
  // and the wake-up poll.
  const unsigned entries = std::max<unsigned>(64, config_.depth * 2 + 8);
  auto ring = Ring::Create(entries, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
  if (!ring.ok()) {
    // Kernels before 6.1 lack DEFER_TASKRUN; the data path works without.
    ring = Ring::Create(entries, 0);
  }
  if (!ring.ok()) return ring.status();
  ring_ = std::make_unique<Ring>(*std::move(ring));
  auto descs = ublk::IoDescMap::Map(config_.char_fd, config_.q_id, config_.depth);
  if (!descs.ok()) return descs.status();
  descs_ = std::make_unique<ublk::IoDescMap>(*std::move(descs));
  void* mem = mmap(nullptr, size_t{config_.depth} * config_.max_io_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return ErrnoToStatus(errno, "mmap of the queue's buffers");
  buffers_ = static_cast<uint8_t*>(mem);
  tags_ = std::vector<Tag>(config_.depth);
  live_tags_ = config_.depth;
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
  io_uring_sqe* wake = Sqe();
  io_uring_prep_read(wake, wake_fd_.get(), &wake_value_, sizeof(wake_value_), 0);
  io_uring_sqe_set_data64(wake, UserData(Op::kWake));
  // The FETCH_REQs must be in the kernel before START_DEV (which waits for
  // every queue): submit now, and say whether it worked.
  const int submitted = io_uring_submit(ring_->get());
  if (submitted < 0) ready_status_ = ErrnoToStatus(-submitted, "submitting FETCH_REQs");
  ready_.Notify();
  if (submitted < 0) return ready_status_;

  while (live_tags_ > 0 && !exit_now_.load()) {
    const int ret = io_uring_submit_and_wait(ring_->get(), 1);
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
      return ErrnoToStatus(-ret, "io_uring_submit_and_wait");
    }
    now_ns_ = MonotonicNs();
    io_uring_cqe* cqe;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(ring_->get(), head, cqe) {
      HandleCqe(*cqe);
      ++seen;
    }
    io_uring_cq_advance(ring_->get(), seen);
    MaybeSend();
  }
  return first_error_;
}

void QueueWorker::SubmitFetchAll() {
  for (uint16_t tag = 0; tag < config_.depth; ++tag) {
    io_uring_sqe* sqe = Sqe();
    ublk::PrepIoCmd(sqe, config_.char_fd, ublk::kIoFetchReq, config_.q_id, tag, 0,
                    reinterpret_cast<uintptr_t>(buffers_ + size_t{tag} * config_.max_io_bytes));
    io_uring_sqe_set_data64(sqe, UserData(Op::kIoCmd, tag));
  }
}

void QueueWorker::HandleCqe(const io_uring_cqe& cqe) {
  switch (OpOf(cqe.user_data)) {
    case Op::kIoCmd:
      OnIoCmd(TagOf(cqe.user_data), cqe.res);
      return;
    case Op::kSend:
      OnSend(cqe.res);
      return;
    case Op::kRecv:
      OnRecv(cqe.res);
      return;
    case Op::kWake:
      FailConnection(absl::CancelledError(exit_now_.load() ? "attach failed" : "forced detach"));
      return;
  }
  LOG(ERROR) << "queue " << config_.q_id << ": unknown completion 0x" << std::hex << cqe.user_data;
}

void QueueWorker::OnIoCmd(uint16_t tag, int res) {
  Tag& t = tags_[tag];
  if (res == -ENODEV) {  // UBLK_IO_RES_ABORT: the device is stopping
    t.state = TagState::kAborted;
    --live_tags_;
    return;
  }
  if (res != ublk::kIoResOk) {
    LOG(ERROR) << "queue " << config_.q_id << " tag " << tag << ": ublk command failed: " << res;
    if (first_error_.ok()) first_error_ = ErrnoToStatus(-res, "ublk I/O command");
    t.state = TagState::kAborted;
    --live_tags_;
    return;
  }
  StartRequest(tag);
}

void QueueWorker::StartRequest(uint16_t tag) {
  Tag& t = tags_[tag];
  t.iod = descs_->Get(tag);
  t.kind = KindOf(t.iod);
  t.start_ns = now_ns_;
  if (t.kind) stats_.OnStart();
  info_.size = size_limit_.load(std::memory_order_relaxed);
  MappedRequest mapped = MapRequest(t.iod, info_);
  if (mapped.error != 0) {
    Complete(tag, mapped.error);
    return;
  }
  if (!connected_) {
    Complete(tag, -EIO);
    return;
  }
  if ((mapped.request.type == nbd::kCmdRead || mapped.request.type == nbd::kCmdWrite) &&
      mapped.request.length > config_.max_io_bytes) {
    // The kernel keeps requests within max_sectors; never trust it with
    // our buffer's bounds.
    Complete(tag, -EINVAL);
    return;
  }
  t.request = mapped.request;
  t.request.cookie = MakeCookie({generation_, config_.q_id, tag});
  t.server_error = absl::OkStatus();
  t.coverage.reset();
  t.payload_in_send = false;
  t.reply_waiting = false;
  auto n = nbd::EncodeRequest(t.request, info_.mode, t.header);
  CHECK(n.ok()) << n.status();  // MapRequest validated the request
  t.header_size = *n;
  t.state = TagState::kQueued;
  send_queue_.push_back(tag);
}

void QueueWorker::Complete(uint16_t tag, int32_t result) {
  Tag& t = tags_[tag];
  if (t.kind) {
    stats_.OnComplete(*t.kind, uint64_t{t.iod.nr_sectors} << 9, now_ns_ - t.start_ns, result < 0);
  }
  t.state = TagState::kFetching;
  io_uring_sqe* sqe = Sqe();
  ublk::PrepIoCmd(sqe, config_.char_fd, ublk::kIoCommitAndFetchReq, config_.q_id, tag, result,
                  reinterpret_cast<uintptr_t>(buffers_ + size_t{tag} * config_.max_io_bytes));
  io_uring_sqe_set_data64(sqe, UserData(Op::kIoCmd, tag));
}

void QueueWorker::MaybeSend() {
  if (send_in_flight_ || send_queue_.empty() || !connected_) return;
  send_iov_.clear();
  send_batch_.clear();
  send_iov_pos_ = 0;
  for (size_t n = 0; n < kMaxBatch && !send_queue_.empty(); ++n) {
    const uint16_t tag = send_queue_.front();
    send_queue_.pop_front();
    Tag& t = tags_[tag];
    t.state = TagState::kInFlight;
    send_iov_.push_back({t.header, t.header_size});
    if (t.request.type == nbd::kCmdWrite) {
      send_iov_.push_back({buffers_ + size_t{tag} * config_.max_io_bytes, t.request.length});
      t.payload_in_send = true;
      send_batch_.push_back(tag);
    }
  }
  send_msg_ = {};
  send_msg_.msg_iov = send_iov_.data();
  send_msg_.msg_iovlen = send_iov_.size();
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_sendmsg(sqe, socket_.get(), &send_msg_, MSG_NOSIGNAL | MSG_WAITALL);
  io_uring_sqe_set_data64(sqe, UserData(Op::kSend));
  send_in_flight_ = true;
}

void QueueWorker::OnSend(int res) {
  send_in_flight_ = false;
  if (!connected_) return;  // FailConnection already failed these tags
  if (res < 0) {
    FailConnection(ErrnoToStatus(-res, "send to the NBD server"));
    return;
  }
  // A short send: skip what went out and send the rest.
  size_t sent = static_cast<size_t>(res);
  while (send_iov_pos_ < send_iov_.size() && sent >= send_iov_[send_iov_pos_].iov_len) {
    sent -= send_iov_[send_iov_pos_].iov_len;
    ++send_iov_pos_;
  }
  if (send_iov_pos_ == send_iov_.size()) {
    // The batch's payloads are out: their buffers are free, and replies
    // that came first can complete now.
    for (uint16_t tag : send_batch_) {
      Tag& t = tags_[tag];
      t.payload_in_send = false;
      if (t.reply_waiting) {
        t.reply_waiting = false;
        Complete(tag, t.reply_result);
      }
    }
    send_batch_.clear();
    return;
  }
  iovec& partial = send_iov_[send_iov_pos_];
  partial.iov_base = static_cast<uint8_t*>(partial.iov_base) + sent;
  partial.iov_len -= sent;
  send_msg_.msg_iov = send_iov_.data() + send_iov_pos_;
  send_msg_.msg_iovlen = send_iov_.size() - send_iov_pos_;
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_sendmsg(sqe, socket_.get(), &send_msg_, MSG_NOSIGNAL | MSG_WAITALL);
  io_uring_sqe_set_data64(sqe, UserData(Op::kSend));
  send_in_flight_ = true;
}

void QueueWorker::ArmRecv() {
  if (!connected_ || recv_in_flight_) return;
  if (rx_step_ == RxStep::kHeader && rx_got_ == 0) {
    // A new reply: the shortest header first; the magic says if more follows.
    rx_dest_ = rx_header_;
    rx_want_ = info_.mode == nbd::HeaderMode::kExtended ? nbd::kExtendedReplySize
                                                       : nbd::kSimpleReplySize;
  }
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_recv(sqe, socket_.get(), rx_dest_ + rx_got_, rx_want_ - rx_got_, MSG_WAITALL);
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
        rx_dest_ = rx_scratch_;
        rx_want_ = std::min<uint64_t>(rx_skip_left_, sizeof(rx_scratch_));
        rx_got_ = 0;
        return absl::OkStatus();
      }
      if (rx_reply_.done()) FinishReply(rx_tag_);
      rx_step_ = RxStep::kHeader;
      rx_got_ = 0;
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown receive step");
}

absl::Status QueueWorker::OnReplyHeader() {
  auto header = nbd::DecodeReplyHeader({rx_header_, rx_want_}, info_.mode);
  if (!header.ok()) return header.status();
  const CookieParts cookie = SplitCookie(header->cookie);
  if (cookie.generation != generation_ || cookie.q_id != config_.q_id ||
      cookie.tag >= config_.depth || tags_[cookie.tag].state != TagState::kInFlight ||
      tags_[cookie.tag].reply_waiting) {
    return nbd::ProtocolViolation(nbd::ProtocolError::kUnknownCookie,
                                  absl::StrCat("reply for cookie 0x", absl::Hex(header->cookie),
                                               ", which is not in flight on queue ", config_.q_id));
  }
  rx_reply_ = *header;
  rx_tag_ = cookie.tag;
  Tag& t = tags_[rx_tag_];
  rx_got_ = 0;
  if (!header->structured) {
    if (absl::Status s = nbd::CheckSimpleReply(*header, t.request, info_.mode); !s.ok()) return s;
    if (header->error == 0 && t.request.type == nbd::kCmdRead) {
      rx_step_ = RxStep::kPayload;
      rx_dest_ = buffers_ + size_t{rx_tag_} * config_.max_io_bytes;
      rx_want_ = t.request.length;
      return absl::OkStatus();
    }
    if (header->error != 0) {
      t.server_error = ErrnoToStatus(-nbd::NbdErrorToNegErrno(header->error), "NBD server");
    }
    FinishReply(rx_tag_);
    rx_step_ = RxStep::kHeader;
    return absl::OkStatus();
  }
  auto prefix = nbd::ChunkPrefixSize(*header, t.request, info_.mode);
  if (!prefix.ok()) return prefix.status();
  rx_step_ = RxStep::kChunkPrefix;
  rx_dest_ = rx_scratch_;
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
      uint8_t* dest = buffers_ + size_t{rx_tag_} * config_.max_io_bytes + at;
      if (chunk->kind == nbd::Chunk::Kind::kHole) {
        std::memset(dest, 0, chunk->length);
        break;
      }
      rx_step_ = RxStep::kPayload;
      rx_dest_ = dest;
      rx_want_ = chunk->length;
      return absl::OkStatus();
    }
    case nbd::Chunk::Kind::kError:
      if (t.server_error.ok()) {
        t.server_error = ErrnoToStatus(-nbd::NbdErrorToNegErrno(chunk->error), "NBD server");
      }
      // The message and any trailer (ERROR_OFFSET's offset) are skipped.
      rx_skip_left_ = uint64_t{chunk->message_length} + chunk->trailer_length;
      if (rx_skip_left_ > 0) {
        rx_step_ = RxStep::kSkip;
        rx_dest_ = rx_scratch_;
        rx_want_ = std::min<uint64_t>(rx_skip_left_, sizeof(rx_scratch_));
        return absl::OkStatus();
      }
      break;
  }
  if (rx_reply_.done()) FinishReply(rx_tag_);
  rx_step_ = RxStep::kHeader;
  return absl::OkStatus();
}

void QueueWorker::FinishReply(uint16_t tag) {
  Tag& t = tags_[tag];
  int32_t result = SuccessResult(t.iod);
  if (!t.server_error.ok()) {
    result = StatusToNegErrno(t.server_error);
  } else if (t.request.type == nbd::kCmdRead && rx_reply_.structured &&
             (!t.coverage || !t.coverage->complete())) {
    // DONE before the whole read arrived, with no error: the server broke
    // the protocol. Fail this request; the connection goes too.
    FailConnection(nbd::ProtocolViolation(nbd::ProtocolError::kIncompleteRead,
                                          "read ended before all of it arrived"));
    return;
  }
  if (t.payload_in_send) {
    // The server answered before our SENDMSG finished with this write's
    // buffer: commit only once it has (OnSend).
    t.reply_waiting = true;
    t.reply_result = result;
    return;
  }
  Complete(tag, result);
}

void QueueWorker::FailConnection(const absl::Status& why) {
  if (!connected_) return;
  connected_ = false;
  LOG(ERROR) << "queue " << config_.q_id << ": dropping the NBD connection: " << why;
  {
    absl::MutexLock lock(&error_mu_);
    connection_error_ = std::string(why.message());
  }
  healthy_.store(false, std::memory_order_release);
  // Pending RECV/SENDMSG complete with errors once the socket is shut down.
  ::shutdown(socket_.get(), SHUT_RDWR);
  for (uint16_t tag = 0; tag < config_.depth; ++tag) {
    Tag& t = tags_[tag];
    if (t.state == TagState::kQueued || t.state == TagState::kInFlight) {
      t.payload_in_send = false;
      t.reply_waiting = false;
      Complete(tag, -EIO);
    }
  }
  send_queue_.clear();
  send_batch_.clear();
}

}  // namespace ublkgw::engine
