// One ublk hardware queue served over one NBD connection, by one thread.
//
// The worker is the driver of pure parts, each the one owner of its state:
//   TagTable         (tag_table.h)         each tag's request and lifecycle
//   SendChain        (send_chain.h)        the linked ops of the send in flight
//   ReplyReader      (reply_reader.h)      the reply stream: bytes in, events out
//   ConnectionState  (connection_state.h)  up, lost, draining, failing, leaving
// and moves bytes and completions between them and the kernel on its own
// io_uring. Block data takes one of two paths (engine/data_path.h):
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
//   reply is received and parsed, a read's data into the request's buffer
//   (each structured chunk at its offset; holes zeroed) ->
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
// fault, never a completion. Requests wait meanwhile, until the reconnect
// deadline: then they, and new ones, fail with EIO until a connection is
// back. A request sent `max_attempts` times without a reply fails with EIO;
// one sent twice, each time on a connection that failed, goes alone after
// that (kSuspectAttempts), so only a request that itself breaks the server
// uses up its attempts.
// Limits: a server that loses writes it acknowledged (a crash with a
// volatile cache) cannot be noticed by a client; and a write that timed
// out may still land on a slow server after it was sent again.
//
// Threads: Run() is the worker's thread and the only one touching its
// state. Abort(), Leave() and ExitNow() may be called from any thread: they
// post an order (an atomic) and write an eventfd, and the worker applies
// the order to its ConnectionState on its next turn. The reconnect thread
// hands over a new socket under link_mu_ and reports its failed attempts in
// connection_error_ (under error_mu_).
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
#include "engine/connection_state.h"
#include "engine/data_path.h"
#include "engine/reconnect.h"
#include "engine/reply_reader.h"
#include "engine/send_chain.h"
#include "engine/stats.h"
#include "engine/tag_table.h"
#include "engine/ublk_queue.h"
#include "nbd/codec.h"
#include "nbd/handshake.h"

namespace ublkgw::engine {

struct QueueConfig {
  uint16_t q_id = 0;
  uint16_t depth = 128;
  uint32_t max_io_bytes = 1024 * 1024;  // the largest request
  DataPathPlan plan;                    // copy unless plan.zero_copy
  ReconnectPolicy reconnect;
  Connector connector;  // unset: a failed connection fails all I/O for good
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
  // Orders from other threads (orders_), applied by TakeOrders.
  enum Order : uint8_t { kOrderAbort = 1, kOrderLeave = 2, kOrderExit = 4 };

  absl::Status Setup();
  void SubmitFetchAll();
  void PrepIoCmd(uint32_t cmd_op, uint16_t tag, int32_t result);
  void HandleCqe(const io_uring_cqe& cqe);
  void OnIoCmd(uint16_t tag, int res);
  // UBLK_F_BATCH_IO (config_.plan.batch): requests come in FETCH_IO_CMDS'
  // completions, and the commits of a loop turn go in one COMMIT_IO_CMDS.
  bool Batch() const { return config_.plan.batch; }
  uint8_t BatchElemBytes() const;
  uint16_t BatchFlags() const;
  // Appends `tag`'s element (its buffer, its result) to `elems`.
  void AppendBatchElem(std::vector<uint8_t>* elems, uint16_t tag, int32_t result) const;
  // At start: PREP_IO_CMDS of every tag, linked ahead of the fetch.
  void PrepAndFetchBatch();
  void ArmFetchBatch();
  // Fetches again once a failed fetch's wait is over.
  void MaybeRearmFetch();
  void OnFetchBatch(const io_uring_cqe& cqe);
  void OnPrepBatch(int res);
  // Sends the turn's commits (pending_commits_) in one COMMIT_IO_CMDS.
  void FlushCommits();
  void OnCommitBatch(uint64_t user_data, int res);
  // The fetch ended for good (the device stops): every tag the kernel holds
  // is done.
  void EndFetching();
  void StartRequest(uint16_t tag);
  // Commits `result` for `tag` (COMMIT_AND_FETCH_REQ, prepared now).
  void Complete(uint16_t tag, int32_t result);
  void ReleaseBuffer(uint16_t tag);
  uint8_t* CopyBuffer(uint16_t tag) const {
    return buffers_ + size_t{tag} * config_.max_io_bytes;
  }
  // queue_worker_send.cc
  void MaybeSend();
  void SubmitChain(bool with_registers);
  void PrepChainOp(io_uring_sqe* sqe, size_t index, int flags);
  void OnSend(const io_uring_cqe& cqe);
  void EndChain();
  // queue_worker_recv.cc
  void ArmRecv();
  // Reads whose data must not meet a wide RECV: on zero copy every read
  // (its data may only land in its own pages), on the copy path the large
  // ones (their data would be copied out of staging). tags_ counts them.
  int64_t ReadsKeptFromWideRecvs() const { return tags_.large_reads_unanswered(); }
  void CancelWideRecv();
  void OnRecv(int res);
  // Acts on every complete reply (or part) in the staging buffer. False
  // when the connection failed on the way.
  bool ParseReplies();
  void ZeroFill(uint16_t tag, uint32_t offset, uint32_t len);
  // The fused path: `sqe`, just prepared as an op on fixed buffer `tag`,
  // becomes the slave of a fused command lending it `tag`'s pages. Nothing
  // on the other paths.
  void Lend(io_uring_sqe* sqe, uint16_t tag);
  void OnZeroFill(uint64_t user_data, int res);
  void OnBufReg(uint64_t user_data, int res);
  // The reply to `tag` is complete; `server_result` is 0 or its -errno.
  void FinishReply(uint16_t tag, int32_t server_result);
  // queue_worker_link.cc
  // The socket failed: it is shut down, and reconnecting starts (or its
  // I/O fails for good).
  void FailConnection(const absl::Status& why);
  // For good: no more reconnecting, every request fails with EIO.
  void CloseForGood(const absl::Status& why);
  // An invariant of ours broke (a bug, or a kernel completion we cannot
  // explain): logs `what` and fails this queue's I/O with EIO for good, as
  // a forced detach does. Never aborts the daemon.
  void Fault(absl::string_view what);
  void TakeOrders();
  // Leaving: goes once nothing on the wire awaits a reply, or the grace
  // is over.
  void MaybeLeave();
  // Shuts the socket down and drops what is still queued on it.
  void AbortSocket();
  void Wake();
  void OnWake();
  // Every turn while the socket is down: the deadline, the drain, a new
  // socket.
  void Recover();
  void FailWaiting();
  void RequeueUnanswered();
  void InstallSocket(UniqueFd socket);
  void CheckReplyTimeout();
  void StartReconnecting(int wait_first);
  void StopReconnecting();
  void ReconnectLoop(int wait_first);
  // Publishes conn_'s Link, with `why` as the connection error.
  void PublishLink(const absl::Status& why);
  // A free SQE; never null (see Fault).
  io_uring_sqe* Sqe();
  bool Fused() const {
    return config_.plan.zero_copy && config_.plan.registration == BufferRegistration::kFused;
  }
  // What Sqe() hands out when the ring has none: two entries, the size of
  // one on a ring of 128-byte SQEs (the fused path's).
  io_uring_sqe spare_sqe_[2]{};
  bool ring_broken_ = false;  // it did: the loop ends (nothing it prepares is submitted)

  QueueConfig config_;
  nbd::ExportInfo info_;
  UniqueFd socket_;
  uint64_t sends_ = 0;  // every send so far: the cookies' use counter
  UniqueFd wake_fd_;    // eventfd: orders and new sockets -> the worker
  std::unique_ptr<Ring> ring_;
  std::unique_ptr<UblkQueue> queue_;
  uint8_t* buffers_ = nullptr;  // copy path: depth * max_io_bytes
  // UBLK_F_BATCH_IO: PREP_IO_CMDS' elements; the commits prepared this turn;
  // COMMIT_IO_CMDS' buffers, each untouched while its command is in
  // flight; the fetch's state; the tags of the last fetch completion.
  std::vector<uint8_t> prep_elems_;
  std::vector<uint8_t> pending_commits_;
  struct CommitBuffer {
    std::vector<uint8_t> elems;
    bool busy = false;
  };
  std::vector<CommitBuffer> commit_buffers_;
  bool fetch_over_ = false;
  bool fetch_armed_ = false;
  int fetch_failures_ = 0;       // in a row, none bringing a request
  uint64_t fetch_retry_ns_ = 0;  // when to fetch again after them (0: not due)
  static constexpr int kQuickFetchRetries = 3;
  std::vector<uint16_t> fetched_;
  TagTable tags_;
  absl::Status first_error_;
  ConnectionState conn_;
  std::atomic<uint8_t> orders_{0};
  int64_t leave_on_wire_ = 0;  // requests on the wire when told to leave

  // Sending: requests waiting for the next chain, and the chain in flight
  // (or being resent after a short send).
  std::deque<uint16_t> send_queue_;
  SendChain chain_;
  uint64_t send_seq_ = 0;
  std::vector<uint16_t> unsent_, release_;  // EndChain's, kept for their memory

  // Receiving (queue_worker_recv.cc): the reader, and the staging buffer
  // its bytes come through, [rx_head_, rx_tail_) not parsed yet.
  // rx_direct_: the RECV in flight goes straight into a read's buffer.
  // More would copy much of a large payload through staging rather than
  // receive it in place.
  static constexpr size_t kStagingBytes = 32 * 1024;
  static constexpr uint64_t kDirectPayload = 16 * 1024;  // copy path
  bool recv_in_flight_ = false;
  ReplyReader reader_;
  std::vector<uint8_t> rx_buf_;
  size_t rx_head_ = 0;
  size_t rx_tail_ = 0;
  bool rx_direct_ = false;
  // The RECV in flight may take more than Want() (no read kept from wide
  // RECVs could be answered when it was armed), and it is being cancelled.
  bool rx_wide_ = false;
  bool rx_cancelling_ = false;
  UniqueFd zero_fd_;  // /dev/zero: zero copy fills holes from it
  uint64_t wake_value_ = 0;

  uint64_t next_timeout_check_ns_ = 0;
  std::thread reconnect_thread_;
  absl::Mutex link_mu_;
  bool stop_reconnecting_ ABSL_GUARDED_BY(link_mu_) = false;
  UniqueFd new_socket_ ABSL_GUARDED_BY(link_mu_);
  // eventfd: StopReconnecting -> a connect or handshake under way, which
  // ends at once rather than at its timeout.
  UniqueFd stop_fd_;

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
