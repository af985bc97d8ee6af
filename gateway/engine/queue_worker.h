// One ublk hardware queue served over one NBD connection, by one thread.
//
// The worker owns its io_uring, its I/O descriptor mapping and the NBD
// socket. Block data takes one of two paths (engine/data_path.h):
//   copy       a buffer of ours per tag; the kernel copies between it and
//              the request, the socket ops use it.
//   zero copy  the request's pages are fixed buffer `tag` of this ring: the
//              kernel registers them when it hands us the request (auto),
//              or a REGISTER_IO_BUF linked ahead of the request's send does
//              and an UNREGISTER_IO_BUF before its commit undoes it
//              (explicit). The socket ops name that slot, and no byte
//              passes through user space.
// A request's path, all on the ring:
//   FETCH_REQ completes with a tag -> the descriptor becomes an NBD request
//   -> its header (and a write's data) joins the next send chain -> the
//   reply header is received, then a read's data straight into the request's
//   buffer (each structured chunk at its offset; holes zeroed) ->
//   COMMIT_AND_FETCH_REQ with the result, once nothing uses the buffer.
// Every loop turn submits once. One send chain is in flight at a time (its
// ops linked, so requests never interleave on the stream); one RECV is in
// flight at a time, so replies are parsed in order.
//
// When the connection fails (an error, EOF, a protocol violation, no reply
// within the I/O timeout) the socket is shut down and, once every op on it
// has completed, each request that had no reply goes back to the front of
// the send queue, in the order it was sent. A reconnect thread connects
// again with backoff (engine/reconnect.h), and the queue is sent again.
// Every send gets a cookie of its own (MakeCookie: a per-queue count of
// sends and the tag): a reply that does not carry the cookie of its tag's
// current send (late, replayed, for another use of the tag) is a protocol
// fault, never a completion. Requests wait meanwhile, until the reconnect deadline: then
// they, and new ones, fail with EIO until a connection is back. A request
// sent `max_attempts` times without a reply fails with EIO.
// Limits: a server that loses writes it acknowledged (a crash with a
// volatile cache) cannot be noticed by a client; and a write that timed
// out may still land on a slow server after it was sent again.
//
// Threads: Run() is the worker's thread and the only one touching its
// state. Abort() may be called from any thread (it writes an eventfd); the
// reconnect thread hands over a new socket under link_mu_ and reports its
// failed attempts in connection_error_ (under error_mu_).
// A request sent twice, each time on a connection that failed, goes alone
// after that, so only a request that itself breaks the server uses up its
// attempts.
#ifndef UBLKGW_ENGINE_QUEUE_WORKER_H_
#define UBLKGW_ENGINE_QUEUE_WORKER_H_

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "base/uring.h"
#include "engine/data_path.h"
#include "engine/reconnect.h"
#include "engine/reply_reader.h"
#include "engine/stats.h"
#include "nbd/codec.h"
#include "nbd/handshake.h"
#include "engine/ublk_queue.h"

namespace ublkgw::engine {

struct QueueConfig {
  uint16_t q_id = 0;
  uint16_t depth = 128;
  uint32_t max_io_bytes = 512 * 1024;  // the largest request
  DataPathPlan plan;                   // copy unless plan.zero_copy
  ReconnectPolicy reconnect;
  Connector connector;  // unset: a failed connection fails all I/O for good
};

// A queue's connection, as the API reports it.
enum class Link : uint8_t {
  kUp,            // connected
  kReconnecting,  // lost; requests wait for the next connection
  kFailingIo,     // lost past the reconnect deadline (or for good): I/O fails with EIO
};

class QueueWorker {
 public:
  // `socket` is a connected NBD socket past the handshake described by
  // `info`; `queue` is the ublk side (KernelUblkQueue, or a test's fake).
  QueueWorker(QueueConfig config, std::unique_ptr<UblkQueue> queue, nbd::ExportInfo info,
              UniqueFd socket);
  ~QueueWorker();

  // Serves the queue until the device is stopped (every tag aborted). Sets
  // up the ring and buffers in the calling thread (the ring's single
  // issuer). Returns the first internal error, OK after a clean stop.
  absl::Status Run();

  // Fails every in-flight and later request with -EIO by dropping the
  // connection for good (forced detach). Thread-safe.
  void Abort();

  // Makes Run() return at once, whatever is in flight, failing nothing;
  // closing the ring then cancels the queue's ublk commands. For a device
  // that never started (a failed attach or take-over). Thread-safe.
  void ExitNow();

  // Leaves the queue for the next daemon, which is issued every request
  // that got no reply here: nothing more is sent, replies to what was sent
  // are awaited (kLeaveGrace at most) and committed, then Run() returns as
  // after ExitNow(). So a write is not in flight on this connection while
  // the next daemon sends it again. Thread-safe.
  void Leave();
  static constexpr absl::Duration kLeaveGrace = absl::Seconds(5);

  // Waits until Run() has its FETCH_REQs in the kernel (or failed first).
  // Returns Run()'s set-up status, or DEADLINE_EXCEEDED. Thread-safe.
  absl::Status WaitReady(absl::Duration timeout);

  // Requests past `bytes` fail with EINVAL from now on (a resize).
  // Thread-safe.
  void SetSizeLimit(uint64_t bytes) { size_limit_.store(bytes, std::memory_order_relaxed); }

  // Statistics, readable from any thread.
  const QueueStats& stats() const { return stats_; }
  // The connection's state and, when it is not up, why. Thread-safe.
  Link link() const { return link_.load(std::memory_order_acquire); }
  std::string connection_error() const;

 private:
  enum class TagState : uint8_t {
    kFetching,    // FETCH_REQ or COMMIT_AND_FETCH_REQ in the kernel
    kQueued,      // waiting for the next SENDMSG batch
    kInFlight,    // sent (or being sent); waiting for its reply
    kAborted,     // the kernel aborted the fetch: the device is stopping
  };
  struct Tag {
    TagState state = TagState::kFetching;
    ublk::ublksrv_io_desc iod{};
    nbd::Request request{};
    uint8_t header[32];  // the encoded NBD request header
    size_t header_size = 0;
    uint64_t cookie = 0;     // of its current send
    int32_t fill_errno = 0;  // a hole could not be zeroed: the read fails so
    // Operations still using the request's buffer (a write's payload in a
    // send, SEND_ZC's notification to come, a hole being zeroed): the
    // request is committed only once there are none. A reply that comes
    // earlier waits here.
    uint16_t buffer_users = 0;
    bool reply_waiting = false;
    // Explicit registration: a REGISTER_IO_BUF for this request was queued,
    // so its commit must be preceded by an UNREGISTER_IO_BUF.
    bool registered = false;
    // Its REGISTER_IO_BUF failed (not just cancelled): the slot's state is
    // unknown, so the request fails rather than being sent again.
    bool register_failed = false;
    // Sending: when it last went out, in which order, and how many times.
    uint64_t sent_ns = 0;
    uint64_t send_seq = 0;
    int attempts = 0;
    int32_t reply_result = 0;
    // For statistics: what the kernel asked for, and when it arrived.
    std::optional<OpKind> kind;
    uint64_t start_ns = 0;
  };

  // One SQE of the send chain: user memory (headers; in the copy path,
  // payloads too) sent with SENDMSG, or part of a request's fixed buffer.
  struct SendOp {
    bool fixed = false;
    WriteOp op = WriteOp::kSend;  // fixed only
    uint16_t tag = 0;             // fixed: whose buffer
    uint32_t offset = 0;          // fixed: the part not sent yet
    uint32_t len = 0;
    uint32_t iov_begin = 0;  // memory: the iovecs not sent yet
    uint32_t iov_end = 0;
    uint32_t batch_begin = 0;  // copy path: the tags in send_batch_ whose
    uint32_t batch_end = 0;    // payloads this op carries
    msghdr msg{};
    bool done = false;
  };

  absl::Status Setup();
  void SubmitFetchAll();
  void PrepIoCmd(uint32_t cmd_op, uint16_t tag, int32_t result);
  void HandleCqe(const io_uring_cqe& cqe);
  void OnIoCmd(uint16_t tag, int res);
  void StartRequest(uint16_t tag);
  void Complete(uint16_t tag, int32_t result);
  void ReleaseBuffer(uint16_t tag);
  uint8_t* CopyBuffer(uint16_t tag) const {
    return buffers_ + size_t{tag} * config_.max_io_bytes;
  }
  // queue_worker_send.cc
  void MaybeSend();
  void SubmitChain(bool with_registers);
  void OnSend(const io_uring_cqe& cqe);
  void Advance(SendOp& op, size_t sent);
  void EndChain();
  // queue_worker_recv.cc
  void ArmRecv();
  void OnRecv(int res);
  // Acts on every complete reply (or part) in the staging buffer. False
  // when the connection failed on the way.
  bool ParseReplies();
  // The request whose current send has `cookie`, if it awaits a reply.
  const nbd::Request* InFlight(uint64_t cookie) const;
  void ZeroFill(uint16_t tag, uint32_t offset, uint32_t len);
  void OnZeroFill(uint64_t user_data, int res);
  void OnBufReg(uint64_t user_data, int res);
  // The reply to `tag` is complete; `server_result` is 0 or its -errno.
  void FinishReply(uint16_t tag, int32_t server_result);
  void FailConnection(const absl::Status& why);
  // An invariant of ours broke (a bug, or a kernel completion we cannot
  // explain): logs `what` and fails this queue's I/O with EIO for good, as
  // a forced detach does. Never aborts the daemon.
  void Fault(absl::string_view what);

  // Whether a leaving queue can go: nothing it sent awaits a reply, or the
  // connection is gone, or kLeaveGrace has passed.
  bool DoneLeaving();
  // Shuts the socket down and drops what is still queued on it.
  void AbortSocket();
  // queue_worker_link.cc
  void Wake();
  void OnWake();
  void Recover();
  void RequeueUnanswered();
  void InstallSocket(UniqueFd socket);
  void CheckReplyTimeout();
  void StartReconnecting(int wait_first);
  void StopReconnecting();
  void ReconnectLoop(int wait_first);
  void SetLink(Link link, const absl::Status& why);
  // A free SQE; never null (see Fault).
  io_uring_sqe* Sqe();
  io_uring_sqe spare_sqe_{};  // what Sqe() hands out when the ring has none
  bool ring_broken_ = false;  // it did: the loop ends (nothing it prepares is submitted)

  QueueConfig config_;
  nbd::ExportInfo info_;
  UniqueFd socket_;
  uint64_t sends_ = 0;  // every send so far: the cookies' use counter
  UniqueFd wake_fd_;  // eventfd: Abort() -> the worker
  std::unique_ptr<Ring> ring_;
  std::unique_ptr<UblkQueue> queue_;
  uint8_t* buffers_ = nullptr;  // copy path: depth * max_io_bytes
  std::vector<Tag> tags_;
  int live_tags_ = 0;
  absl::Status first_error_;

  // Sending: the chain in flight (or being resent after a short send).
  std::deque<uint16_t> send_queue_;
  std::vector<SendOp> chain_;
  size_t chain_in_kernel_ = 0;        // its ops not completed yet
  std::vector<iovec> send_iov_;
  std::vector<uint16_t> send_batch_;  // copy path: tags whose payload is in it
  // Explicit registration: the tags whose REGISTER_IO_BUF heads the chain.
  std::vector<uint16_t> chain_registered_;
  uint64_t send_seq_ = 0;
  // A request sent twice already, each time on a connection that then
  // failed, goes alone, and nothing follows it until its reply: a request
  // that brings the server down uses up its own attempts, not its
  // neighbours'. -1: none.
  int alone_tag_ = -1;

  // Receiving (queue_worker_recv.cc): the reader, and the staging buffer
  // its bytes come through, [rx_head_, rx_tail_) not parsed yet.
  // rx_direct_: the RECV in flight goes straight into a read's buffer.
  // More would copy much of a large payload through staging rather than
  // receive it in place.
  static constexpr size_t kStagingBytes = 32 * 1024;
  static constexpr uint64_t kDirectPayload = 16 * 1024;  // copy path
  bool connected_ = true;
  bool recv_in_flight_ = false;
  ReplyReader reader_;
  std::vector<uint8_t> rx_buf_;
  size_t rx_head_ = 0;
  size_t rx_tail_ = 0;
  bool rx_direct_ = false;
  UniqueFd zero_fd_;  // /dev/zero: zero copy fills holes from it
  uint64_t wake_value_ = 0;

  // The connection lost: since when, whether the old socket's ops are all
  // done (drained_), and whether requests now fail (the deadline passed,
  // or for good).
  uint64_t down_since_ns_ = 0;
  // A connection that fails within a second of being made counts as a
  // quick failure; after some in a row, reconnecting waits first (a server
  // that drops every connection at once is not hammered).
  uint64_t up_since_ns_ = 0;
  int quick_failures_ = 0;
  bool drained_ = true;
  bool failing_io_ = false;
  uint64_t next_timeout_check_ns_ = 0;
  std::thread reconnect_thread_;
  absl::Mutex link_mu_;
  bool stop_reconnecting_ ABSL_GUARDED_BY(link_mu_) = false;
  UniqueFd new_socket_ ABSL_GUARDED_BY(link_mu_);
  // eventfd: StopReconnecting -> a connect or handshake under way, which
  // ends at once rather than at its timeout.
  UniqueFd stop_fd_;

  std::atomic<bool> abort_{false};
  std::atomic<bool> exit_now_{false};
  std::atomic<bool> leaving_{false};
  uint64_t leave_deadline_ns_ = 0;  // set by the first turn that sees leaving_
  int64_t leave_in_flight_ = 0;     // requests on the wire then
  absl::Notification ready_;
  absl::Status ready_status_;  // written before ready_ is notified

  // Refreshed once per loop turn: a request's latency runs from the turn
  // that saw it arrive to the turn that completes it.
  uint64_t now_ns_ = 0;
  std::atomic<uint64_t> size_limit_;
  QueueStats stats_;
  std::atomic<Link> link_{Link::kUp};
  mutable absl::Mutex error_mu_;
  std::string connection_error_ ABSL_GUARDED_BY(error_mu_);
};

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_QUEUE_WORKER_H_
