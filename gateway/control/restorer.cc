#include "control/restorer.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "control/left_device.h"
#include "control/volume_request.h"
#include "engine/export_connection.h"
#include "glog/logging.h"
#include "ublk/io_queue.h"

namespace ublkgw::control {

Retry RetryAfter(absl::Duration backoff, bool adopting, absl::Duration max) {
  const absl::Duration cap = adopting ? std::min(max, absl::Seconds(5)) : max;
  const absl::Duration wait = std::min(backoff, cap);
  return {wait, std::min(wait * 2, cap)};
}

std::vector<RecordedVolume> RecordedVolumes(const std::vector<v1::AttachmentRecord>& records,
                                            size_t max, const std::string& where,
                                            absl::Time now) {
  std::vector<RecordedVolume> out;
  std::set<uint32_t> ids;
  for (const auto& record : records) {
    const uint32_t id = record.device_id();
    if (ids.contains(id)) {
      LOG(ERROR) << where << " records /dev/ublkb" << id << " twice; keeping the first";
      continue;
    }
    if (out.size() >= max) {
      LOG(ERROR) << where << " records more than " << max << " volumes; ignoring "
                 << record.request().uri();
      continue;
    }
    ids.insert(id);
    RecordedVolume& volume = out.emplace_back(RecordedVolume{record, {}});
    volume.progress.next_try = now;
    if (auto valid = ValidateAttachRequest(record.request()); !valid.ok()) {
      volume.progress.error = absl::StrCat("the recorded request is invalid (",
                                           valid.status().message(),
                                           "); detach it and attach again");
      volume.progress.next_try = absl::InfiniteFuture();
    }
  }
  return out;
}

Restorer::Restorer(RestoreHost& host, UblkHost& driver, const ManagerOptions& options,
                   bool recording)
    : host_(host), driver_(driver), options_(options), recording_(recording) {
  cancel_.Reset(::eventfd(0, EFD_CLOEXEC));
  if (!cancel_.valid()) {
    PLOG(WARNING) << "eventfd: a stop will wait for the restores still connecting";
  }
}

void Restorer::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_) return;
  try {
    loop_ = std::thread([this] { Loop(); });
    started_ = true;
  } catch (const std::system_error& e) {
    LOG(ERROR) << "no thread to restore recorded volumes with (" << e.what()
               << "); they stay listed as restoring until the daemon restarts";
  }
}

void Restorer::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  std::thread loop;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    loop = std::move(loop_);
  }
  // Their result would be thrown away: the attempts still connecting (to a
  // server that drops packets, say) end now, not at their connect timeout.
  // The eventfd is never read, so it stays readable.
  if (cancel_.valid()) {
    const uint64_t one = 1;
    if (::write(cancel_.get(), &one, sizeof(one)) != sizeof(one)) PLOG(ERROR) << "eventfd write";
  }
  // The loop starts no attempt once it has seen stopping_; after it is
  // joined, attempts_ only shrinks.
  if (loop.joinable()) loop.join();
  std::map<uint64_t, std::thread> attempts;
  {
    absl::MutexLock lock(&mu_);
    attempts.swap(attempts_);
    finished_keys_.clear();
  }
  for (auto& [key, thread] : attempts) thread.join();
}

void Restorer::Loop() {
  while (true) {
    uint64_t seen = 0;
    {
      absl::MutexLock lock(&mu_);
      // Read before the schedule: an attempt that ends after this read
      // (its volume due again, a slot free) wakes the wait below.
      seen = finished_;
    }
    JoinFinished();
    const absl::Time next = StartDue();
    absl::MutexLock lock(&mu_);
    auto wake = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return stopping_ || finished_ != seen || absl::Now() >= next;
    };
    mu_.AwaitWithDeadline(absl::Condition(&wake), next);
    if (stopping_) return;
  }
}

absl::Time Restorer::StartDue() {
  const RestoreHost::Schedule schedule = host_.RestoreSchedule(absl::Now());
  for (uint32_t id : schedule.due) {
    {
      absl::MutexLock lock(&mu_);
      // The others stay due: the next attempt to end wakes the loop.
      if (stopping_ || attempts_.size() >= kMaxAttempts) return absl::InfiniteFuture();
    }
    std::optional<RestoreClaim> claim = host_.ClaimForRestore(id);
    if (!claim.has_value()) continue;
    // A claimed volume always gets its attempt (Stop joins it), or, with
    // no thread to run it on, an end that retries it later: no claim is
    // left without an end, and no daemon dies of a thread it cannot have.
    {
      absl::MutexLock lock(&mu_);
      const uint64_t key = next_key_++;
      try {
        std::thread& slot = attempts_[key];
        slot = std::thread([this, key, claim = *claim] { Run(key, claim); });
        continue;
      } catch (const std::system_error& e) {
        attempts_.erase(key);
        LOG(ERROR) << "no thread to restore volume " << id << " with: " << e.what();
      }
    }
    RestoreResult failed;
    failed.device = absl::ResourceExhaustedError("no thread to restore the volume with");
    Finish(*claim, std::move(failed));
  }
  return schedule.next;
}

void Restorer::JoinFinished() {
  std::vector<std::thread> ended;
  {
    absl::MutexLock lock(&mu_);
    for (uint64_t key : finished_keys_) {
      auto it = attempts_.find(key);
      if (it == attempts_.end()) continue;
      ended.push_back(std::move(it->second));
      attempts_.erase(it);
    }
    finished_keys_.clear();
  }
  // Each has said it ended: these return at once.
  for (std::thread& thread : ended) thread.join();
}

void Restorer::Run(uint64_t key, const RestoreClaim& claim) {
  if (std::optional<RestoreResult> result = Attempt(claim); result.has_value()) {
    Finish(claim, *std::move(result));
  }
  absl::MutexLock lock(&mu_);
  finished_keys_.push_back(key);
  ++finished_;
}

std::optional<RestoreResult> Restorer::Attempt(const RestoreClaim& claim) {
  const v1::AttachmentRecord& record = claim.record;
  RestoreResult result;
  auto options = AttachOptionsFor(record.request(), options_);  // invalid records are never due
  if (!options.ok()) {
    result.device = options.status();
    return result;
  }
  if (absl::Status control = driver_.Check(); !control.ok()) {
    result.device = control;
    return result;
  }
  // A device the previous daemon left in the kernel is taken over with as
  // many connections as it has queues; otherwise one is made.
  const LeftDevice left = AskLeftDevice(driver_, record);
  result.adopting = left.verdict != LeftVerdict::kNone;
  switch (left.verdict) {
    case LeftVerdict::kAdopt:
      options->queues = static_cast<uint16_t>(left.dev.nr_hw_queues);
      options->depth = left.dev.queue_depth;
      options->device_cookie = record.device_cookie();
      break;
    case LeftVerdict::kNone:
      // The volume keeps its mark: were this daemon to crash before the
      // record is saved again, the next one still knows the device.
      MayOutlive(recording_, record.device_cookie(), *options);
      break;
    case LeftVerdict::kWait:
    case LeftVerdict::kRetry:
      result.device = absl::UnavailableError(left.why);
      return result;
  }
  result.cookie = options->device_cookie;
  // No lock held: a server slow to answer holds up this volume alone.
  auto connected = engine::ConnectExport(*options, cancel_.get());
  if (!connected.ok()) {
    result.device = connected.status();
    return result;
  }
  std::optional<std::set<uint32_t>> reserved = host_.BeginMaking(claim, result.adopting);
  if (!reserved.has_value()) return std::nullopt;  // its connections close here
  options->device_id = claim.id;
  options->reserved_ids = *std::move(reserved);
  // No lock held either: START_DEV's partition scan reads from the server,
  // END_USER_RECOVERY waits for the new queues.
  result.device = result.adopting ? driver_.Adopt(*options, *std::move(connected))
                                  : driver_.Create(*options, *std::move(connected));
  return result;
}

void Restorer::Finish(const RestoreClaim& claim, RestoreResult result) {
  const std::string& uri = claim.record.request().uri();
  const absl::Status status = result.device.status();
  const std::string path =
      ublk::BlockDevicePath(status.ok() ? (*result.device)->id() : claim.id);
  if (!status.ok()) {
    const Retry retry = RetryAfter(claim.backoff, result.adopting, options_.restore_backoff_max);
    result.retry_in = retry.wait;
    result.next_backoff = retry.next_backoff;
  }
  if (!host_.FinishRestore(claim, result)) {
    // Detached while its device was being made: the operator's detach has
    // forgotten it; what was made goes too (nothing uses it yet).
    LOG(INFO) << ublk::BlockDevicePath(claim.id) << " (" << uri
              << ") was detached while being restored";
    if (status.ok()) {
      if (absl::Status s = (*result.device)->Detach(/*force=*/true); !s.ok()) {
        LOG(ERROR) << "detaching " << path << ": " << s;
      }
    }
    return;
  }
  if (status.code() == absl::StatusCode::kCancelled) {  // Stop: nothing is retried
    LOG(INFO) << "stopped restoring " << uri << " as " << path;
    return;
  }
  if (!status.ok()) {
    LOG(WARNING) << (result.adopting ? "taking over " : "restoring ") << uri << " as " << path
                 << ": " << status << "; retrying in " << absl::FormatDuration(result.retry_in);
    return;
  }
  LOG(INFO) << (result.adopting ? "took over " : "restored ") << uri << " as " << path;
}

}  // namespace ublkgw::control
