#include "engine/connection_state.h"

namespace ublkgw::engine {

const char* ConnStateName(ConnState s) {
  switch (s) {
    case ConnState::kUp:
      return "up";
    case ConnState::kLeaving:
      return "leaving";
    case ConnState::kLost:
      return "lost";
    case ConnState::kLostFailing:
      return "lost, failing I/O";
    case ConnState::kLostClosed:
      return "lost for good";
    case ConnState::kReconnecting:
      return "reconnecting";
    case ConnState::kFailing:
      return "failing I/O, reconnecting";
    case ConnState::kClosed:
      return "closed";
    case ConnState::kLeft:
      return "left";
    case ConnState::kExited:
      return "exited";
  }
  return "?";
}

Link ConnectionState::link() const {
  switch (state_) {
    case ConnState::kUp:
    case ConnState::kLeaving:
      return Link::kUp;
    case ConnState::kLost:
    case ConnState::kReconnecting:
      return Link::kReconnecting;
    default:
      return Link::kFailingIo;
  }
}

bool ConnectionState::fails_io() const {
  switch (state_) {
    case ConnState::kLostFailing:
    case ConnState::kLostClosed:
    case ConnState::kFailing:
    case ConnState::kClosed:
      return true;
    default:
      return false;
  }
}

bool ConnectionState::draining() const {
  return state_ == ConnState::kLost || state_ == ConnState::kLostFailing ||
         state_ == ConnState::kLostClosed;
}

bool ConnectionState::may_reconnect() const {
  switch (state_) {
    case ConnState::kLost:
    case ConnState::kLostFailing:
    case ConnState::kReconnecting:
    case ConnState::kFailing:
      return true;
    default:
      return false;
  }
}

bool ConnectionState::Lose(uint64_t now_ns) {
  if (state_ == ConnState::kLeaving) {
    state_ = ConnState::kLeft;  // nothing of ours reaches the server any more
    return false;
  }
  if (state_ != ConnState::kUp) return false;
  down_since_ns_ = now_ns;
  quick_failures_ = now_ns - up_since_ns_ < 1000000000 ? quick_failures_ + 1 : 0;
  state_ = reconnect_ ? ConnState::kLost : ConnState::kLostClosed;
  return reconnect_;
}

void ConnectionState::Drained() {
  switch (state_) {
    case ConnState::kLost:
      state_ = ConnState::kReconnecting;
      return;
    case ConnState::kLostFailing:
      state_ = ConnState::kFailing;
      return;
    case ConnState::kLostClosed:
      state_ = ConnState::kClosed;
      return;
    default:
      return;
  }
}

bool ConnectionState::CheckDeadline(uint64_t now_ns, absl::Duration deadline,
                                    bool keep_reconnecting) {
  if (state_ != ConnState::kLost && state_ != ConnState::kReconnecting) return false;
  if (deadline <= absl::ZeroDuration() ||
      absl::Nanoseconds(static_cast<int64_t>(now_ns - down_since_ns_)) < deadline) {
    return false;
  }
  const bool lost = state_ == ConnState::kLost;
  if (keep_reconnecting) {
    state_ = lost ? ConnState::kLostFailing : ConnState::kFailing;
  } else {
    state_ = lost ? ConnState::kLostClosed : ConnState::kClosed;
  }
  return true;
}

bool ConnectionState::Up(uint64_t now_ns) {
  if (!accepts_socket()) return false;
  state_ = ConnState::kUp;
  up_since_ns_ = now_ns;
  return true;
}

bool ConnectionState::Close() {
  switch (state_) {
    case ConnState::kUp:
      state_ = ConnState::kLostClosed;
      return true;
    case ConnState::kLeaving:
      state_ = ConnState::kLeft;
      return true;
    case ConnState::kLost:
    case ConnState::kLostFailing:
      state_ = ConnState::kLostClosed;
      return false;
    case ConnState::kReconnecting:
    case ConnState::kFailing:
      state_ = ConnState::kClosed;
      return false;
    default:
      return false;
  }
}

void ConnectionState::Leave(uint64_t now_ns, absl::Duration grace) {
  if (state_ == ConnState::kLeaving) return;  // told again: the first grace holds
  if (state_ == ConnState::kUp) {
    state_ = ConnState::kLeaving;
    leave_deadline_ns_ = now_ns + static_cast<uint64_t>(absl::ToInt64Nanoseconds(grace));
  } else if (!over()) {
    state_ = ConnState::kLeft;
  }
}

bool ConnectionState::MaybeLeft(uint64_t now_ns, int64_t awaiting) {
  if (state_ != ConnState::kLeaving) return false;
  if (awaiting > 0 && !LeaveGraceOver(now_ns)) return false;
  state_ = ConnState::kLeft;
  return true;
}

}  // namespace ublkgw::engine
