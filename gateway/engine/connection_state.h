// The state of one queue's NBD connection, and of the queue's life around
// it, as one pure state machine: events in (the socket failed, the old
// socket's ops are all done, a new socket, the reconnect deadline, orders
// from other threads), the state out. No I/O and no clock of its own: the
// caller passes the time. The queue worker asks it what to do: whether to
// send, whether a request fails at once, whether a new socket may be taken,
// whether Run() is over.
//
//   kUp ──Lose──────────────> kLost ──Drained──> kReconnecting ──Up──> kUp
//    │   (no reconnecting) ──> kLostClosed ──Drained──> kClosed
//    │                         kLost ──deadline──> kLostFailing ──Drained──> kFailing ──Up──> kUp
//    │                         (a deadline with no more reconnecting closes)
//    └─Leave──> kLeaving ──answered, lost or grace over──> kLeft
//   any ──ExitNow──> kExited;   any but kLeft/kExited ──Close──> closed (or kLeft while leaving)
//
// Threads: not thread-safe; the queue worker's thread owns it.
#ifndef UBLKGW_ENGINE_CONNECTION_STATE_H_
#define UBLKGW_ENGINE_CONNECTION_STATE_H_

#include <cstdint>

#include "absl/time/time.h"

namespace ublkgw::engine {

// A queue's connection, as the API reports it.
enum class Link : uint8_t {
  kUp,            // connected
  kReconnecting,  // lost; requests wait for the next connection
  kFailingIo,     // lost past the reconnect deadline (or for good): I/O fails with EIO
};

enum class ConnState : uint8_t {
  kUp,            // requests go out on the socket
  kLeaving,       // up, told to leave: nothing more is sent; replies are awaited
  kLost,          // the socket failed: its ops are completing; requests wait
  kLostFailing,   // the same, past the reconnect deadline: requests fail
  kLostClosed,    // the same, for good: requests fail, no reconnecting
  kReconnecting,  // the old socket is drained: requests wait for the next one
  kFailing,       // drained, past the deadline: requests fail until a socket comes
  kClosed,        // drained, for good: every request fails; no socket is taken
  kLeft,          // Run() ends, leaving requests without a reply to the next daemon
  kExited,        // Run() ends at once (ExitNow)
};

const char* ConnStateName(ConnState s);

class ConnectionState {
 public:
  // `reconnect`: a failed connection may be replaced (a connector and a
  // reconnect deadline above zero).
  explicit ConnectionState(bool reconnect) : reconnect_(reconnect) {}

  ConnState state() const { return state_; }
  Link link() const;

  // The socket may carry ops: sends (kUp only) and the RECV.
  bool socket_live() const { return state_ == ConnState::kUp || state_ == ConnState::kLeaving; }
  bool may_send() const { return state_ == ConnState::kUp; }
  // A request that is not on the wire fails with EIO at once.
  bool fails_io() const;
  // The old socket's ops are still completing: nothing is sent again, and
  // no request is queued again, until Drained().
  bool draining() const;
  // A new socket from the reconnect thread may be installed.
  bool accepts_socket() const {
    return state_ == ConnState::kReconnecting || state_ == ConnState::kFailing;
  }
  // Reconnect attempts may go on.
  bool may_reconnect() const;
  bool over() const { return state_ == ConnState::kLeft || state_ == ConnState::kExited; }

  // The socket failed. Returns whether to reconnect. A connection that
  // failed within a second of being made counts as a quick failure (see
  // quick_failures()). Ignored (false) unless the socket was live.
  bool Lose(uint64_t now_ns);
  // Every op of the lost socket has completed.
  void Drained();
  // Checks the reconnect deadline: true the first time it passes, with
  // requests now failing (and, unless `keep_reconnecting`, for good).
  bool CheckDeadline(uint64_t now_ns, absl::Duration deadline, bool keep_reconnecting);
  // A new socket is in place. False (and no change) unless accepts_socket().
  bool Up(uint64_t now_ns);
  // For good: a forced detach, a fault, no thread to reconnect with.
  // Returns whether the socket was live (the caller must abort it).
  bool Close();
  // Told to leave for the next daemon: kLeaving while up (answers awaited
  // until `now_ns + grace`), kLeft at once otherwise; told again while
  // leaving, nothing changes.
  void Leave(uint64_t now_ns, absl::Duration grace);
  // While leaving: nothing on the wire awaits a reply (or the grace is
  // over): kLeft. Returns whether it left.
  bool MaybeLeft(uint64_t now_ns, int64_t awaiting);
  bool LeaveGraceOver(uint64_t now_ns) const { return now_ns >= leave_deadline_ns_; }
  void ExitNow() { state_ = ConnState::kExited; }

  uint64_t down_since_ns() const { return down_since_ns_; }
  // Failures within a second of connecting, in a row: reconnecting waits
  // as if that many attempts had failed (a server that drops every
  // connection at once is not hammered).
  int quick_failures() const { return quick_failures_; }

 private:
  const bool reconnect_;
  ConnState state_ = ConnState::kUp;
  uint64_t down_since_ns_ = 0;
  uint64_t up_since_ns_ = 0;
  int quick_failures_ = 0;
  uint64_t leave_deadline_ns_ = 0;
};

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_CONNECTION_STATE_H_
