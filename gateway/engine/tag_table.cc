#include "engine/tag_table.h"

#include <algorithm>

#include "engine/request_mapping.h"
#include "nbd/wire.h"

namespace ublkgw::engine {

bool TagTable::Arrive(uint16_t tag, const ublk::ublksrv_io_desc& iod, uint64_t now_ns) {
  Tag& t = tags_[tag];
  if (t.state != TagState::kFetching) return false;
  t.state = TagState::kOwned;
  t.iod = iod;
  t.start_ns = now_ns;
  return true;
}

bool TagTable::Queue(uint16_t tag, const nbd::Request& request) {
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

bool TagTable::Send(uint16_t tag, uint64_t cookie, uint64_t now_ns, uint64_t seq) {
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

void TagTable::Unqueue(const Tag& t) {
  if (t.state == TagState::kInFlight) --unanswered_;
  if (t.request.type == nbd::kCmdRead) {
    --reads_unanswered_;
    if (t.request.length >= large_read_) --large_reads_unanswered_;
  }
}

void TagTable::LeaveWire(Tag& t) {
  --on_wire_;
  if (t.alone) {
    t.alone = false;
    --suspects_in_flight_;
  }
}

bool TagTable::Requeue(uint16_t tag) {
  Tag& t = tags_[tag];
  if (t.state != TagState::kInFlight) return false;
  LeaveWire(t);
  --unanswered_;
  t.state = TagState::kQueued;
  t.fill_errno = 0;
  return true;
}

bool TagTable::Answer(uint16_t tag, int32_t result) {
  Tag& t = tags_[tag];
  if (t.state != TagState::kInFlight) return false;
  Unqueue(t);
  t.state = TagState::kAnswered;
  t.result = result;
  return true;
}

bool TagTable::Commit(uint16_t tag) {
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

bool TagTable::Abort(uint16_t tag) {
  Tag& t = tags_[tag];
  if (t.state != TagState::kFetching) return false;
  t.state = TagState::kAborted;
  --live_;
  return true;
}

bool TagTable::ReleaseBuffer(uint16_t tag, bool* commit_due) {
  Tag& t = tags_[tag];
  *commit_due = false;
  if (t.buffer_users == 0) return false;
  --t.buffer_users;
  *commit_due = t.buffer_users == 0 && t.state == TagState::kAnswered;
  return true;
}

const nbd::Request* TagTable::InFlight(uint64_t cookie) const {
  const uint16_t tag = CookieTag(cookie);
  if (tag >= tags_.size()) return nullptr;
  const Tag& t = tags_[tag];
  if (t.state != TagState::kInFlight || t.cookie != cookie) return nullptr;
  return &t.request;
}

bool TagTable::AnyUnansweredBufferInUse() const {
  return std::any_of(tags_.begin(), tags_.end(), [](const Tag& t) {
    return t.state == TagState::kInFlight && t.buffer_users > 0;
  });
}

std::vector<uint16_t> TagTable::UnansweredBySend() const {
  std::vector<uint16_t> tags;
  for (uint16_t tag = 0; tag < tags_.size(); ++tag) {
    if (tags_[tag].state == TagState::kInFlight) tags.push_back(tag);
  }
  std::sort(tags.begin(), tags.end(),
            [this](uint16_t a, uint16_t b) { return tags_[a].send_seq < tags_[b].send_seq; });
  return tags;
}

bool TagTable::AnyUnansweredSince(uint64_t before_ns) const {
  return std::any_of(tags_.begin(), tags_.end(), [before_ns](const Tag& t) {
    return t.state == TagState::kInFlight && t.sent_ns < before_ns;
  });
}

}  // namespace ublkgw::engine
