// A queue's tags and each one's request, with the lifecycle a tag goes
// through spelled out and checked: a transition from the wrong state is
// refused (false), which the worker treats as a broken invariant (a fault),
// never as something to guess around.
//
//   kFetching ──Arrive──> kOwned ──Queue──> kQueued ──Send──> kInFlight
//       ^                    │                 ^                 │ Answer
//       │                    │                 └──Requeue────────┤
//       └──────Commit────────┴─────────────────────────────── kAnswered
//   kFetching ──Abort──> kAborted (the device is stopping)
//
// kAnswered: the reply is complete but something still uses the request's
// buffer (its payload send, SEND_ZC's notification, a hole being zeroed);
// the commit waits for the last buffer user.
// Pure: no I/O. Threads: the queue worker's only.
#ifndef UBLKGW_ENGINE_TAG_TABLE_H_
#define UBLKGW_ENGINE_TAG_TABLE_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "engine/request_mapping.h"
#include "engine/stats.h"
#include "nbd/codec.h"
#include "nbd/wire.h"
#include "ublk/uapi.h"

namespace ublkgw::engine {

enum class TagState : uint8_t {
  kFetching,   // FETCH_REQ or COMMIT_AND_FETCH_REQ in the kernel
  kOwned,      // a request arrived; not yet queued or committed
  kQueued,     // waiting for the next send chain
  kInFlight,   // sent (or being sent); waiting for its reply
  kAnswered,   // replied; its buffer still in use, so not committed yet
  kAborted,    // the kernel aborted the fetch: the device is stopping
};

struct Tag {
  TagState state = TagState::kFetching;
  ublk::ublksrv_io_desc iod{};
  nbd::Request request{};
  uint8_t header[32];  // the encoded NBD request header
  size_t header_size = 0;
  uint64_t cookie = 0;  // of its current send
  // Operations still using the request's buffer; see kAnswered.
  uint16_t buffer_users = 0;
  int32_t result = 0;      // kAnswered: what the commit reports
  int32_t fill_errno = 0;  // a hole could not be zeroed: the read fails so
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
  bool alone = false;  // this send is a suspect's (kSuspectAttempts)
  // For statistics: what the kernel asked for, and when it arrived.
  std::optional<OpKind> kind;
  uint64_t start_ns = 0;
};

// A request sent this often, each time on a connection that then failed,
// is a suspect: it goes alone, and nothing follows it until its reply, so a
// request that brings the server down uses up its own attempts, not its
// neighbours'.
inline constexpr int kSuspectAttempts = 2;

class TagTable {
 public:
  // Reads of `large_read` bytes or more are counted apart
  // (large_reads_unanswered).
  explicit TagTable(uint16_t depth, uint64_t large_read = std::numeric_limits<uint64_t>::max())
      : tags_(depth), live_(depth), large_read_(large_read) {}

  uint16_t depth() const { return static_cast<uint16_t>(tags_.size()); }
  bool valid(uint16_t tag) const { return tag < tags_.size(); }
  Tag& operator[](uint16_t tag) { return tags_[tag]; }
  const Tag& operator[](uint16_t tag) const { return tags_[tag]; }

  // Transitions (see the diagram). Each returns false, changing nothing,
  // when the tag is not in a state it may leave that way.
  bool Arrive(uint16_t tag, const ublk::ublksrv_io_desc& iod, uint64_t now_ns);
  // kOwned -> kQueued, with its request; per-request state starts afresh.
  bool Queue(uint16_t tag, const nbd::Request& request);
  // kQueued -> kInFlight: sent now with `cookie`, as the `seq`th send.
  bool Send(uint16_t tag, uint64_t cookie, uint64_t now_ns, uint64_t seq);
  // kInFlight -> kQueued: its connection failed without a reply.
  bool Requeue(uint16_t tag);
  // kInFlight -> kAnswered, to commit `result` once the buffer is free.
  bool Answer(uint16_t tag, int32_t result);
  // kOwned, kQueued, kInFlight or kAnswered -> kFetching (the commit is
  // the caller's to send).
  bool Commit(uint16_t tag);
  // kFetching -> kAborted.
  bool Abort(uint16_t tag);

  // Buffer users (kQueued, kInFlight, kAnswered). Release returns false
  // when there was none to release; `*commit_due` is set when it was the
  // last of an answered request's.
  void TakeBuffer(uint16_t tag) { ++tags_[tag].buffer_users; }
  bool ReleaseBuffer(uint16_t tag, bool* commit_due);

  // The request in flight whose current send has `cookie`, or null: a
  // reply with any other cookie answers nothing of ours.
  const nbd::Request* InFlight(uint64_t cookie) const;
  // Tags not committed or aborted: the kernel still has a fetch to answer.
  int live() const { return live_; }
  // Sent and not yet committed (kInFlight or kAnswered).
  int64_t on_wire() const { return on_wire_; }
  // Sent and waiting for their reply (kInFlight).
  int64_t unanswered() const { return unanswered_; }
  // Reads queued or sent with no reply yet: a read's data may come (or,
  // once sent, be on its way) only while this is above 0.
  int64_t reads_unanswered() const { return reads_unanswered_; }
  // Those of them of at least `large_read` bytes.
  int64_t large_reads_unanswered() const { return large_reads_unanswered_; }
  // A suspect (kSuspectAttempts) is in flight: nothing else may be sent.
  bool suspect_in_flight() const { return suspects_in_flight_ > 0; }
  // Unanswered requests still using their buffer (the lost socket's ops).
  bool AnyUnansweredBufferInUse() const;
  // kInFlight tags, in the order they were sent.
  std::vector<uint16_t> UnansweredBySend() const;
  // Some request was sent before `before_ns` and has no reply yet.
  bool AnyUnansweredSince(uint64_t before_ns) const;

 private:
  void LeaveWire(Tag& t);
  // t leaves kQueued or kInFlight for good (answered or committed).
  void Unqueue(const Tag& t);

  std::vector<Tag> tags_;
  int live_;
  int64_t on_wire_ = 0;
  int64_t unanswered_ = 0;
  int64_t reads_unanswered_ = 0;
  uint64_t large_read_;
  int64_t large_reads_unanswered_ = 0;
  int suspects_in_flight_ = 0;
};

// The transitions every request goes through, defined here so the worker's
// calls to them inline.
inline bool TagTable::Arrive(uint16_t tag, const ublk::ublksrv_io_desc& iod, uint64_t now_ns) {
  Tag& t = tags_[tag];
  if (t.state != TagState::kFetching) return false;
  t.state = TagState::kOwned;
  t.iod = iod;
  t.start_ns = now_ns;
  return true;
}

inline bool TagTable::Queue(uint16_t tag, const nbd::Request& request) {
  Tag& t = tags_[tag];
  if (t.state != TagState::kOwned) return false;
  t.state = TagState::kQueued;
  t.request = request;
  t.fill_errno = 0;
  t.buffer_users = 0;
  t.result = 0;
  t.attempts = 0;
  t.register_failed = false;
  if (request.type == nbd::kCmdRead) {
    ++reads_unanswered_;
    if (request.length >= large_read_) ++large_reads_unanswered_;
  }
  return true;
}

inline bool TagTable::Send(uint16_t tag, uint64_t cookie, uint64_t now_ns, uint64_t seq) {
  Tag& t = tags_[tag];
  if (t.state != TagState::kQueued) return false;
  t.state = TagState::kInFlight;
  t.cookie = cookie;
  t.request.cookie = cookie;
  t.sent_ns = now_ns;
  t.send_seq = seq;
  t.alone = t.attempts >= kSuspectAttempts;
  ++t.attempts;
  ++on_wire_;
  ++unanswered_;
  if (t.alone) ++suspects_in_flight_;
  return true;
}

inline void TagTable::Unqueue(const Tag& t) {
  if (t.state == TagState::kInFlight) --unanswered_;
  if (t.request.type == nbd::kCmdRead) {
    --reads_unanswered_;
    if (t.request.length >= large_read_) --large_reads_unanswered_;
  }
}

inline void TagTable::LeaveWire(Tag& t) {
  --on_wire_;
  if (t.alone) {
    t.alone = false;
    --suspects_in_flight_;
  }
}

inline bool TagTable::Answer(uint16_t tag, int32_t result) {
  Tag& t = tags_[tag];
  if (t.state != TagState::kInFlight) return false;
  Unqueue(t);
  t.state = TagState::kAnswered;
  t.result = result;
  return true;
}

inline bool TagTable::Commit(uint16_t tag) {
  Tag& t = tags_[tag];
  switch (t.state) {
    case TagState::kInFlight:
      Unqueue(t);
      [[fallthrough]];
    case TagState::kAnswered:
      // Answered: still counted on the wire until now (a leaving queue
      // waits for its commit too).
      LeaveWire(t);
      t.state = TagState::kFetching;
      return true;
    case TagState::kQueued:
      Unqueue(t);
      [[fallthrough]];
    case TagState::kOwned:
      t.state = TagState::kFetching;
      return true;
    default:
      return false;
  }
}

inline const nbd::Request* TagTable::InFlight(uint64_t cookie) const {
  const uint16_t tag = CookieTag(cookie);
  if (tag >= tags_.size()) return nullptr;
  const Tag& t = tags_[tag];
  if (t.state != TagState::kInFlight || t.cookie != cookie) return nullptr;
  return &t.request;
}

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_TAG_TABLE_H_
