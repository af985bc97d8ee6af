#include "ublk/command_ring.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/status.h"
#include "glog/logging.h"

namespace ublkgw::ublk {

CommandRing::~CommandRing() {
  if (abandoned_.empty()) return;
  // The ring's teardown does not wait for a command a kernel worker still
  // runs, which may yet write into its memory: that memory is never freed.
  static absl::Mutex mu(absl::kConstInit);
  static auto* kept = new std::vector<std::vector<uint8_t>>;
  ring_.reset();
  absl::MutexLock lock(&mu);
  for (auto& [tag, memory] : abandoned_) kept->push_back(std::move(memory));
  LOG(WARNING) << "control ring closed with " << abandoned_.size()
               << " command(s) never completed; their memory is kept";
}

absl::StatusOr<CommandRing> CommandRing::Create(unsigned flags, absl::Duration cancel_grace) {
  auto ring = Ring::Create(/*entries=*/4, flags);
  if (!ring.ok()) return ring.status();
  return CommandRing(*std::move(ring), cancel_grace);
}

absl::StatusOr<int> CommandRing::WaitFor(uint64_t tag, absl::Time deadline) {
  for (;;) {
    auto cqe = ring_->SubmitAndWait(std::max(absl::ZeroDuration(), deadline - absl::Now()));
    if (!cqe.ok()) return cqe.status();
    const uint64_t got = (*cqe)->user_data;
    const int res = (*cqe)->res;
    io_uring_cqe_seen(ring_->get(), *cqe);
    if (got == tag) return res;
    if (abandoned_.erase(got) > 0) {
      LOG(WARNING) << "a control command abandoned earlier completed at last: " << res;
    } else if (got != 0) {  // 0: a cancel request's own completion
      LOG(ERROR) << "control ring: a completion for no command (" << got << ")";
    }
  }
}

absl::StatusOr<int> CommandRing::Run(absl::FunctionRef<void(io_uring_sqe*, void*)> prep,
                                     std::span<uint8_t> buffer, absl::Duration timeout) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_->get());
  if (sqe == nullptr) return absl::InternalError("control ring has no free SQE");
  std::vector<uint8_t> memory(buffer.begin(), buffer.end());
  const uint64_t tag = next_tag_++;
  prep(sqe, memory.empty() ? nullptr : memory.data());
  io_uring_sqe_set_data64(sqe, tag);
  auto res = WaitFor(tag, absl::Now() + timeout);
  if (res.ok()) {
    std::copy(memory.begin(), memory.end(), buffer.begin());
    return res;
  }
  if (!absl::IsDeadlineExceeded(res.status())) {
    // The ring itself failed: whether the command is in the kernel is
    // unknown, so its memory stays.
    abandoned_.emplace(tag, std::move(memory));
    return res;
  }
  // Never return with the command in flight: cancel it and reap it.
  io_uring_sqe* cancel = io_uring_get_sqe(ring_->get());
  if (cancel != nullptr) {
    io_uring_prep_cancel64(cancel, tag, 0);
    io_uring_sqe_set_data64(cancel, 0);
    // No grace: the cancel goes in with the next command.
    auto cancelled = cancel_grace_ > absl::ZeroDuration()
                         ? WaitFor(tag, absl::Now() + cancel_grace_)
                         : absl::StatusOr<int>(absl::DeadlineExceededError("no grace"));
    if (cancelled.ok() && *cancelled >= 0) {
      // It completed after all, before the cancel could stop it: what it
      // did is done (a device added, a size changed), so it is reported.
      std::copy(memory.begin(), memory.end(), buffer.begin());
      return cancelled;
    }
    if (cancelled.ok()) {
      return absl::DeadlineExceededError(
          absl::StrCat("the command did not complete within ", absl::FormatDuration(timeout),
                       "; cancelled (", *cancelled, ")"));
    }
  }
  abandoned_.emplace(tag, std::move(memory));
  return absl::DeadlineExceededError(absl::StrCat(
      "the command did not complete within ", absl::FormatDuration(timeout),
      " and did not end when cancelled; it is still in the kernel"));
}

}  // namespace ublkgw::ublk
