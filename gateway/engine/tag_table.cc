#include "engine/tag_table.h"

#include <algorithm>

#include "engine/request_mapping.h"
#include "nbd/wire.h"

namespace ublkgw::engine {

bool TagTable::Requeue(uint16_t tag) {
  Tag& t = tags_[tag];
  if (t.state != TagState::kInFlight) return false;
  LeaveWire(t);
  --unanswered_;
  t.state = TagState::kQueued;
  t.fill_errno = 0;
  return true;
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
