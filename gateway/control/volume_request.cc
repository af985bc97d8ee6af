#include "control/volume_request.h"

#include <tuple>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "nbd/uri.h"

namespace ublkgw::control {

absl::Status VolumeNotFound(const VolumeRef& ref) {
  return absl::NotFoundError(
      absl::StrCat("no volume ", ref.id.has_value() ? absl::StrCat(*ref.id) : ref.path,
                   " is attached by this daemon ('ublkgw list' shows them)"));
}

absl::StatusOr<engine::AttachOptions> ValidateAttachRequest(const v1::AttachRequest& r) {
  if (r.uri().empty()) {
    return absl::InvalidArgumentError("no URI: give nbd://HOST[:PORT]/EXPORT or "
                                      "nbd+unix:///EXPORT?socket=PATH");
  }
  if (r.uri().size() > nbd::kMaxUriLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("the URI is ", r.uri().size(), " bytes; the limit is ", nbd::kMaxUriLength));
  }
  engine::AttachOptions options;
  options.uri = r.uri();
  const uint32_t queues = r.queues() == 0 ? 1 : r.queues();
  const uint32_t depth = r.depth() == 0 ? 128 : r.depth();
  if (queues > engine::kMaxQueues) {
    return absl::InvalidArgumentError(
        absl::StrCat("queues must be 1 to ", engine::kMaxQueues, ", not ", queues));
  }
  if (depth > engine::kMaxDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("depth must be 1 to ", engine::kMaxDepth, ", not ", depth));
  }
  switch (r.data_path()) {
    case v1::DATA_PATH_UNSPECIFIED:
      options.data_path = engine::DataPathMode::kAuto;
      break;
    case v1::DATA_PATH_COPY:
      options.data_path = engine::DataPathMode::kCopy;
      break;
    case v1::DATA_PATH_ZERO_COPY:
      options.data_path = engine::DataPathMode::kZeroCopy;
      break;
    case v1::DATA_PATH_FUSED:
      options.data_path = engine::DataPathMode::kFused;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown data path ", r.data_path()));
  }
  options.queues = static_cast<uint16_t>(queues);
  options.depth = static_cast<uint16_t>(depth);
  options.read_only = r.read_only();
  constexpr uint32_t kMaxPolicyMs = 24 * 3600 * 1000;
  for (const auto& [set, ms, name] :
       {std::tuple{r.has_io_timeout_ms(), r.io_timeout_ms(), "io_timeout_ms"},
        std::tuple{r.has_reconnect_deadline_ms(), r.reconnect_deadline_ms(),
                   "reconnect_deadline_ms"}}) {
    if (set && ms > kMaxPolicyMs) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " is ", ms, "; the limit is ", kMaxPolicyMs, " (a day)"));
    }
  }
  if (auto uri = nbd::ParseUri(options.uri); !uri.ok()) return uri.status();
  return options;
}

engine::ReconnectPolicy PolicyFor(const v1::AttachRequest& r, engine::ReconnectPolicy policy) {
  if (r.has_io_timeout_ms()) policy.io_timeout = absl::Milliseconds(r.io_timeout_ms());
  if (r.has_reconnect_deadline_ms()) {
    policy.reconnect_deadline = absl::Milliseconds(r.reconnect_deadline_ms());
  }
  return policy;
}

absl::StatusOr<engine::AttachOptions> AttachOptionsFor(const v1::AttachRequest& request,
                                                       const ManagerOptions& daemon) {
  auto options = ValidateAttachRequest(request);
  if (!options.ok()) return options.status();
  options->tuning = daemon.tuning;
  options->reconnect = PolicyFor(request, daemon.reconnect);
  return options;
}

void MayOutlive(bool recording, uint64_t cookie, engine::AttachOptions& options) {
  if (!recording) {
    options.why_not_outlive = "ublkgwd records nothing (--state-dir '')";
    return;
  }
  options.outlive_daemon = true;
  if (cookie == 0) {
    // A generator of its own, seeded afresh: marks are rare, and callers
    // on several threads share nothing.
    absl::BitGen random;
    cookie = absl::Uniform<uint64_t>(random, 1, UINT64_MAX);
  }
  options.device_cookie = cookie;
}

}  // namespace ublkgw::control
