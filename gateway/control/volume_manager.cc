#include "control/volume_manager.h"

#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "control/stats_proto.h"
#include "engine/data_path.h"
#include "glog/logging.h"
#include "nbd/uri.h"
#include "ublk/features.h"
#include "ublk/io_queue.h"

namespace ublkgw::control {

namespace {

absl::StatusOr<engine::AttachOptions> Validate(const v1::AttachRequest& r) {
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
  // Parse before touching the kernel: a wrong URI is the caller's mistake
  // on any host.
  if (auto uri = nbd::ParseUri(options.uri); !uri.ok()) return uri.status();
  return options;
}

// The daemon's reconnect policy with what `r` asks for this volume.
engine::ReconnectPolicy PolicyFor(const v1::AttachRequest& r, engine::ReconnectPolicy policy) {
  if (r.has_io_timeout_ms()) policy.io_timeout = absl::Milliseconds(r.io_timeout_ms());
  if (r.has_reconnect_deadline_ms()) {
    policy.reconnect_deadline = absl::Milliseconds(r.reconnect_deadline_ms());
  }
  return policy;
}

uint32_t Ms(absl::Duration d) { return static_cast<uint32_t>(absl::ToInt64Milliseconds(d)); }

std::string KernelRelease() {
  utsname u{};
  return uname(&u) == 0 ? std::string(u.release) : std::string();
}

}  // namespace

VolumeManager::VolumeManager(ManagerOptions options) : options_(std::move(options)) {
  if (!options_.state_dir.empty()) store_.emplace(options_.state_dir);
}

VolumeManager::~VolumeManager() { Shutdown(OnStop::kForceDetach); }

absl::StatusOr<ublk::ControlDevice*> VolumeManager::Control() {
  if (!control_.has_value()) {
    auto opened = ublk::ControlDevice::Open(options_.control_path);
    if (!opened.ok()) return opened.status();
    control_.emplace(*std::move(opened));
  }
  return &*control_;
}

VolumeManager::Table::iterator VolumeManager::Find(const VolumeRef& ref) {
  if (ref.id.has_value()) return volumes_.find(*ref.id);
  for (auto it = volumes_.begin(); it != volumes_.end(); ++it) {
    if (ublk::BlockDevicePath(it->first) == ref.path) return it;
  }
  return volumes_.end();
}

absl::Status VolumeManager::NotFound(const VolumeRef& ref) {
  return absl::NotFoundError(
      absl::StrCat("no volume ", ref.id.has_value() ? absl::StrCat(*ref.id) : ref.path,
                   " is attached by this daemon ('ublkgw list' shows them)"));
}

v1::Volume VolumeManager::Describe(uint32_t id, const Entry& entry,
                                   const engine::StatsSnapshot* stats) const {
  v1::Volume v;
  v.set_device_id(id);
  v.set_device_path(ublk::BlockDevicePath(id));
  const v1::AttachRequest& asked = entry.record.request();
  if (entry.device == nullptr) {
    auto canonical = nbd::ParseUri(asked.uri());
    v.set_uri(canonical.ok() ? canonical->ToString() : asked.uri());
    v.set_queues(asked.queues() == 0 ? 1 : asked.queues());
    v.set_depth(asked.depth() == 0 ? 128 : asked.depth());
    v.set_data_path(asked.data_path());  // as asked: auto is decided at attach
    v.set_read_only(asked.read_only());
    const engine::ReconnectPolicy policy = PolicyFor(asked, options_.reconnect);
    v.set_io_timeout_ms(Ms(policy.io_timeout));
    v.set_reconnect_deadline_ms(Ms(policy.reconnect_deadline));
    v.set_health(v1::HEALTH_RESTORING);
    std::string detail = entry.left_in_kernel
                             ? "its device waits in the kernel (its I/O too) for this daemon to "
                               "take it over"
                             : "recorded, not attached yet";
    if (!entry.restore_error.empty()) absl::StrAppend(&detail, ": ", entry.restore_error);
    if (entry.next_try != absl::InfiniteFuture()) {
      const absl::Duration wait = std::max(entry.next_try - absl::Now(), absl::ZeroDuration());
      absl::StrAppend(&detail, " (next attempt in ",
                      absl::FormatDuration(absl::Trunc(wait, absl::Seconds(1))), ")");
    }
    v.set_health_detail(detail);
    return v;
  }
  const engine::Device& device = *entry.device;
  v.set_uri(device.uri());
  v.set_queues(device.queues());
  v.set_depth(device.depth());
  v.set_data_path(device.data_path().zero_copy ? v1::DATA_PATH_ZERO_COPY : v1::DATA_PATH_COPY);
  v.set_data_path_detail(device.data_path().detail);
  v.set_read_only(device.read_only());
  v.set_size_bytes(device.size());
  const engine::ReconnectPolicy policy = PolicyFor(asked, options_.reconnect);
  v.set_io_timeout_ms(Ms(policy.io_timeout));
  v.set_reconnect_deadline_ms(Ms(policy.reconnect_deadline));
  for (const auto& name : nbd::TransmissionFlagNames(device.export_info().flags)) {
    v.add_transmission_flags(name);
  }
  v.set_note(device.note());
  const engine::StatsSnapshot snapshot = stats ? *stats : device.Stats();
  uint64_t ops = 0, errors = 0;
  for (const auto& op : snapshot.op) {
    ops += op.ops;
    errors += op.errors;
  }
  // Counters are read one by one while the queues run: clamp.
  v.set_completed_requests(ops > errors ? ops - errors : 0);
  v.set_failed_requests(errors);
  const engine::Device::LinkHealth health = device.Health();
  switch (health.link) {
    case engine::Link::kUp:
      v.set_health(v1::HEALTH_OK);
      break;
    case engine::Link::kReconnecting:
      v.set_health(v1::HEALTH_RECONNECTING);
      v.set_health_detail(absl::StrCat(health.problem, "; its I/O waits for the connection"));
      break;
    case engine::Link::kFailingIo:
      v.set_health(v1::HEALTH_DISCONNECTED);
      v.set_health_detail(absl::StrCat(health.problem, "; its I/O fails with EIO"));
      break;
  }
  return v;
}

absl::Status VolumeManager::SaveRecords() {
  if (!store_.has_value()) return absl::OkStatus();
  std::vector<v1::AttachmentRecord> records;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : volumes_) records.push_back(entry.record);
  }
  absl::Status s = store_->Save(records);
  if (!s.ok()) {
    LOG(ERROR) << "recording the volumes in " << store_->path() << ": " << s;
    return s;
  }
  // Every volume in the table now is on disk as it is (a volume that failed
  // to be saved before keeps its flag until a save works).
  absl::MutexLock lock(&mu_);
  for (auto& [id, entry] : volumes_) entry.recorded = true;
  return s;
}

absl::Status VolumeManager::CheckControl() {
  absl::MutexLock ctrl_lock(&ctrl_mu_);
  return Control().status();
}

absl::StatusOr<std::unique_ptr<engine::Device>> VolumeManager::CreateDevice(
    engine::AttachOptions options, std::optional<uint32_t> id,
    absl::StatusOr<engine::ConnectedExport> connected) {
  if (!connected.ok()) return connected.status();
  options.device_id = id;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("the daemon is stopping");
    for (const auto& [other, entry] : volumes_) {
      if (entry.device == nullptr && other != id) options.reserved_ids.insert(other);
    }
  }
  return engine::Device::Create(options_.control_path, options, *std::move(connected));
}

absl::StatusOr<std::unique_ptr<engine::Device>> VolumeManager::AdoptDevice(
    engine::AttachOptions options, uint32_t id, absl::StatusOr<engine::ConnectedExport> connected) {
  if (!connected.ok()) return connected.status();
  options.device_id = id;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("the daemon is stopping");
  }
  return engine::Device::Adopt(options_.control_path, options, *std::move(connected));
}

absl::StatusOr<v1::Volume> VolumeManager::Attach(const v1::AttachRequest& request) {
  auto options = Validate(request);
  if (!options.ok()) return options.status();
  options->tuning = options_.tuning;
  options->reconnect = PolicyFor(request, options_.reconnect);
  // A host without ublk is said so before anything touches the network.
  if (absl::Status s = CheckControl(); !s.ok()) return s;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("the daemon is stopping");
    if (volumes_.size() + connecting_ >= kMaxVolumes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "this daemon already serves ", kMaxVolumes, " volumes: detach one first"));
    }
    ++connecting_;
  }
  // Neither the network part nor the device's creation holds a lock:
  // other calls go on meanwhile.
  auto connected = engine::ConnectExport(*options);
  MayOutlive(*options);
  auto device = CreateDevice(*options, std::nullopt, std::move(connected));
  absl::MutexLock ctrl_lock(&ctrl_mu_);
  bool stopping = false;
  {
    absl::MutexLock lock(&mu_);
    --connecting_;
    stopping = stopping_;
  }
  if (!device.ok()) return device.status();
  if (stopping) {  // Shutdown has taken the table already: this one is ours to end
    (void)(*device)->Detach(/*force=*/true);
    return absl::UnavailableError("the daemon is stopping");
  }
  const uint32_t id = (*device)->id();
  Entry entry;
  entry.record.set_device_id(id);
  *entry.record.mutable_request() = request;
  entry.record.set_attached_unix_time_ns(static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())));
  entry.record.set_device_cookie((*device)->recoverable() ? options->device_cookie : 0);
  entry.device = *std::move(device);
  v1::Volume volume = Describe(id, entry);
  {
    absl::MutexLock lock(&mu_);
    volumes_[id] = std::move(entry);
  }
  if (absl::Status s = SaveRecords(); !s.ok()) {
    volume.set_note(absl::StrCat(volume.note(), volume.note().empty() ? "" : "; ",
                                 "not recorded (", s.message(),
                                 "): a restarted daemon will not attach it again"));
  }
  return volume;
}

absl::Status VolumeManager::Detach(const v1::DetachRequest& request) {
  auto ref = RefOf(request);
  if (!ref.ok()) return ref.status();
  absl::ReleasableMutexLock ctrl_lock(&ctrl_mu_);
  // The table changes only under ctrl_mu_, which is held throughout.
  v1::AttachmentRecord record;
  bool attached = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = Find(*ref);
    if (it == volumes_.end()) return NotFound(*ref);
    record = it->second.record;
    attached = it->second.device != nullptr;
  }
  if (!attached) {
    // Not attached (yet): a device a previous daemon left for it goes
    // first; if it cannot, the volume stays, to be detached again.
    if (absl::Status removed = RemoveLeftDevice(record); !removed.ok()) return removed;
  }
  std::shared_ptr<engine::Device> device;
  {
    absl::MutexLock lock(&mu_);
    auto it = volumes_.find(record.device_id());
    if (it == volumes_.end()) return NotFound(*ref);
    device = std::move(it->second.device);
    volumes_.erase(it);
  }
  // Forget it first: whatever happens next, it is not to come back.
  absl::Status saved = SaveRecords();
  // The detach (a drain of requests in flight, STOP_DEV, DEL_DEV) holds no
  // lock of the daemon's: other volumes are served meanwhile.
  ctrl_lock.Release();
  absl::Status s = device ? device->Detach(request.force()) : absl::OkStatus();
  return s.ok() ? saved : s;
}

void VolumeManager::MayOutlive(engine::AttachOptions& options, uint64_t cookie) {
  if (!store_.has_value()) {
    options.why_not_outlive = "ublkgwd records nothing (--state-dir '')";
    return;
  }
  options.outlive_daemon = true;
  if (cookie == 0) {
    absl::MutexLock lock(&cookie_mu_);
    cookie = absl::Uniform<uint64_t>(cookie_random_, 1, UINT64_MAX);
  }
  options.device_cookie = cookie;
}

LeftDevice VolumeManager::AskLeftDevice(const v1::AttachmentRecord& record) {
  if (record.device_cookie() == 0) return JudgeLeftDevice(record, absl::NotFoundError(""));
  auto ctrl = Control();
  if (absl::IsFailedPrecondition(ctrl.status())) {
    return {LeftVerdict::kNone, "no ublk driver: no device can be left"};
  }
  if (!ctrl.ok()) return {LeftVerdict::kRetry, std::string(ctrl.status().message())};
  return JudgeLeftDevice(record, (*ctrl)->GetDevInfo(record.device_id()));
}

absl::Status VolumeManager::RemoveLeftDevice(const v1::AttachmentRecord& record) {
  const LeftDevice left = AskLeftDevice(record);
  switch (left.verdict) {
    case LeftVerdict::kNone:
      return absl::OkStatus();
    case LeftVerdict::kWait:
    case LeftVerdict::kRetry:
      return absl::UnavailableError(absl::StrCat(left.why, "; try again in a moment"));
    case LeftVerdict::kAdopt:
      break;
  }
  // Its waiting requests fail with EIO; DEL_DEV waits for /dev/ublkcN.
  const uint32_t id = record.device_id();
  LOG(INFO) << "removing " << ublk::BlockDevicePath(id) << ", left by the previous ublkgwd";
  if (absl::Status s = control_->StopDev(id); !s.ok()) return s;
  return control_->DelDev(id);
}

std::vector<v1::Volume> VolumeManager::List() {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Volume> out;
  for (const auto& [id, entry] : volumes_) out.push_back(Describe(id, entry));
  return out;
}

absl::StatusOr<v1::GetVolumeResponse> VolumeManager::GetVolume(const VolumeRef& ref) {
  absl::MutexLock lock(&mu_);
  auto it = Find(ref);
  if (it == volumes_.end()) return NotFound(ref);
  v1::GetVolumeResponse r;
  if (it->second.device == nullptr) {
    *r.mutable_volume() = Describe(it->first, it->second);
  } else {
    const engine::StatsSnapshot stats = it->second.device->Stats();
    *r.mutable_volume() = Describe(it->first, it->second, &stats);
    *r.mutable_stats() = StatsToProto(stats);
    r.mutable_stats()->set_device_id(it->first);
    r.mutable_stats()->set_data_path(r.volume().data_path());
    r.mutable_stats()->set_health(r.volume().health());
  }
  return r;
}

std::vector<v1::GetVolumeResponse> VolumeManager::ListWithStats() {
  std::vector<uint32_t> ids;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : volumes_) ids.push_back(id);
  }
  std::vector<v1::GetVolumeResponse> out;
  for (uint32_t id : ids) {
    if (auto r = GetVolume({id, ""}); r.ok()) out.push_back(*std::move(r));
  }
  return out;
}

absl::StatusOr<v1::Volume> VolumeManager::Resize(const v1::ResizeRequest& request) {
  auto ref = RefOf(request);
  if (!ref.ok()) return ref.status();
  std::shared_ptr<engine::Device> device;
  uint32_t id = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = Find(*ref);
    if (it == volumes_.end()) return NotFound(*ref);
    if (it->second.device == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat(ublk::BlockDevicePath(it->first), " is not attached yet (restoring)"));
    }
    device = it->second.device;
    id = it->first;
  }
  // No lock held: resizing may ask the server. The device serialises it
  // with a detach, and stays alive while it is used here.
  if (absl::Status s = device->Resize(request.size_bytes()); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = volumes_.find(id);
  if (it == volumes_.end()) return NotFound({id, ""});
  return Describe(id, it->second);
}

absl::StatusOr<v1::GetFeaturesResponse> VolumeManager::GetFeatures() {
  absl::MutexLock lock(&ctrl_mu_);
  auto ctrl = Control();
  if (!ctrl.ok()) return ctrl.status();
  auto mask = (*ctrl)->GetFeatures();
  if (!mask.ok()) return mask.status();
  v1::GetFeaturesResponse r;
  r.set_kernel_release(KernelRelease());
  r.set_mask(*mask);
  for (const auto& f : ublk::FeaturesIn(*mask)) r.add_supported(std::string(f.name));
  r.add_data_paths("copy");
  // Zero copy where it would be chosen for a TCP export (unix sockets
  // differ only in SEND_ZC, which zero copy can do without).
  auto probe = engine::CachedProbe(AF_INET);
  if (probe.ok()) {
    auto plan = engine::ChooseDataPath(engine::DataPathMode::kAuto, *mask, *probe);
    if (plan.ok() && plan->zero_copy) r.add_data_paths("zero-copy");
  }
  return r;
}

std::string VolumeManager::FixedBufferProbe() {
  // The kernel's answers do not change while it runs: ask once.
  auto probe = engine::CachedProbe(AF_INET);
  return probe.ok() ? probe->detail : absl::StrCat("probe failed: ", probe.status().message());
}

void VolumeManager::DescribeDaemon(v1::DaemonInfo& info) {
  info.set_kernel_release(KernelRelease());
  auto features = GetFeatures();
  info.set_ublk_available(features.ok());
  if (features.ok()) {
    info.set_ublk_feature_mask(features->mask());
    for (const auto& name : features->supported()) info.add_ublk_features(name);
    for (const auto& path : features->data_paths()) info.add_data_paths(path);
  } else {
    info.set_ublk_unavailable_reason(std::string(features.status().message()));
  }
  info.set_fixed_buffer_probe(FixedBufferProbe());
  info.set_state_dir(options_.state_dir);
  absl::MutexLock lock(&mu_);
  info.set_volumes(static_cast<uint32_t>(volumes_.size()));
}

absl::Status VolumeManager::LoadRecords() {
  if (!store_.has_value()) return absl::OkStatus();
  absl::MutexLock ctrl_lock(&ctrl_mu_);
  auto records = store_->Load();
  if (!records.ok()) {
    LOG(ERROR) << records.status();
    if (absl::IsFailedPrecondition(records.status())) {
      // A newer daemon's record: never overwrite it.
      store_.reset();
    }
    return records.status();
  }
  absl::MutexLock lock(&mu_);
  for (const auto& record : *records) {
    const uint32_t id = record.device_id();
    if (volumes_.contains(id)) {
      LOG(ERROR) << store_->path() << " records /dev/ublkb" << id << " twice; keeping the first";
      continue;
    }
    if (volumes_.size() >= kMaxVolumes) {
      LOG(ERROR) << store_->path() << " records more than " << kMaxVolumes
                 << " volumes; ignoring " << record.request().uri();
      continue;
    }
    Entry& entry = volumes_[id];
    entry.record = record;
    entry.recorded = true;
    entry.next_try = absl::Now();
    entry.backoff = options_.restore_backoff_min;
    if (auto valid = Validate(record.request()); !valid.ok()) {
      // Kept (so it is not lost) and shown, never tried.
      entry.restore_error = absl::StrCat("the recorded request is invalid (", valid.status().message(),
                                         "); detach it and attach again");
      entry.next_try = absl::InfiniteFuture();
    }
  }
  if (!records->empty()) {
    LOG(INFO) << "restoring " << records->size() << " recorded volume(s) from " << store_->path();
  }
  return absl::OkStatus();
}

void VolumeManager::StartRestorer() {
  if (restorer_.joinable()) return;
  restorer_ = std::thread([this] { RestoreLoop(); });
}

absl::Time VolumeManager::RestoreDue() {
  std::vector<uint32_t> due;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    for (const auto& [id, entry] : volumes_) {
      if (entry.device == nullptr && entry.next_try <= now) due.push_back(id);
    }
  }
  // One volume at a time, so an operator's call waits for one attempt at
  // most, not for all of them.
  for (uint32_t id : due) RestoreOne(id);
  absl::MutexLock lock(&mu_);
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [id, entry] : volumes_) {
    if (entry.device == nullptr) next = std::min(next, entry.next_try);
  }
  return next;
}

void VolumeManager::RestoreOne(uint32_t id) {
  v1::AttachmentRecord record;
  {
    absl::MutexLock lock(&mu_);
    auto it = volumes_.find(id);
    // Detached meanwhile, or the daemon is stopping.
    if (stopping_ || it == volumes_.end() || it->second.device != nullptr) return;
    record = it->second.record;
  }
  auto options = Validate(record.request());  // invalid records are never due
  if (options.ok()) {
    options->tuning = options_.tuning;
    options->reconnect = PolicyFor(record.request(), options_.reconnect);
  }
  // A device the previous daemon left in the kernel is taken over with as
  // many connections as it has queues; otherwise one is made.
  LeftDevice left;
  absl::StatusOr<engine::ConnectedExport> connected = absl::UnknownError("not connected");
  if (!options.ok()) {
    connected = options.status();
  } else if (absl::Status control = CheckControl(); !control.ok()) {
    connected = control;
  } else {
    {
      absl::MutexLock ctrl_lock(&ctrl_mu_);
      left = AskLeftDevice(record);
    }
    switch (left.verdict) {
      case LeftVerdict::kAdopt:
        options->queues = static_cast<uint16_t>(left.dev.nr_hw_queues);
        options->depth = left.dev.queue_depth;
        options->device_cookie = record.device_cookie();
        connected = engine::ConnectExport(*options);
        break;
      case LeftVerdict::kNone:
        // The volume keeps its mark: were this daemon to crash before the
        // record is saved again, the next one still knows the device.
        MayOutlive(*options, record.device_cookie());
        connected = engine::ConnectExport(*options);
        break;
      case LeftVerdict::kWait:
      case LeftVerdict::kRetry:
        connected = absl::UnavailableError(left.why);
        break;
    }
  }
  const bool adopting = left.verdict != LeftVerdict::kNone;
  absl::MutexLock ctrl_lock(&ctrl_mu_);
  {
    absl::MutexLock lock(&mu_);
    auto it = volumes_.find(id);
    if (stopping_ || it == volumes_.end() || it->second.device != nullptr) return;
    it->second.left_in_kernel = adopting;
  }
  auto device = !options.ok() ? absl::StatusOr<std::unique_ptr<engine::Device>>(options.status())
                : left.verdict == LeftVerdict::kAdopt
                    ? AdoptDevice(*options, id, std::move(connected))
                    : CreateDevice(*options, id, std::move(connected));
  uint32_t got = id;
  {
    absl::MutexLock lock(&mu_);
    Entry& entry = volumes_.at(id);  // only Detach (under ctrl_mu_) removes it
    if (!device.ok()) {
      // A device waiting in the kernel holds its I/O: try it again soon.
      const absl::Duration cap = adopting ? std::min(options_.restore_backoff_max, absl::Seconds(5))
                                          : options_.restore_backoff_max;
      entry.backoff = std::min(entry.backoff, cap);
      entry.restore_error = std::string(device.status().message());
      entry.next_try = absl::Now() + entry.backoff;
      LOG(WARNING) << (adopting ? "taking over " : "restoring ") << record.request().uri()
                   << " as " << ublk::BlockDevicePath(id) << ": " << device.status()
                   << "; retrying in " << absl::FormatDuration(entry.backoff);
      entry.backoff = std::min(entry.backoff * 2, cap);
      return;
    }
    got = (*device)->id();
    LOG(INFO) << (adopting ? "took over " : "restored ") << record.request().uri() << " as "
              << (*device)->block_path();
    entry.restore_error.clear();
    entry.left_in_kernel = false;
    // A device made again gets its own mark (none if it cannot outlive us),
    // and is not recorded as it is until the record is saved.
    const uint64_t cookie = (*device)->recoverable() ? options->device_cookie : 0;
    if (got != id || cookie != entry.record.device_cookie()) entry.recorded = false;
    entry.record.set_device_cookie(cookie);
    entry.device = *std::move(device);
    if (got != id) {
      // Its old id was taken meanwhile: it lives on under the new one
      // (never a reserved one, so nothing is overwritten).
      Entry renamed = std::move(entry);
      volumes_.erase(id);
      renamed.record.set_device_id(got);
      volumes_[got] = std::move(renamed);
    }
  }
  (void)SaveRecords();  // a new id, or a mark now or no more (logged if it fails)
}

void VolumeManager::RestoreLoop() {
  while (true) {
    const absl::Time next = RestoreDue();
    absl::MutexLock lock(&mu_);
    // Wake for the next due attempt, or to stop.
    auto stop_or_due = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return stopping_ || absl::Now() >= next;
    };
    mu_.AwaitWithDeadline(absl::Condition(&stop_or_due), next);
    if (stopping_) return;
  }
}

void VolumeManager::Shutdown(OnStop how) {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (restorer_.joinable()) restorer_.join();
  std::vector<std::pair<std::shared_ptr<engine::Device>, bool>> devices;  // and recorded
  {
    absl::MutexLock ctrl_lock(&ctrl_mu_);
    absl::MutexLock lock(&mu_);
    for (auto& [id, entry] : volumes_) {
      if (entry.device) devices.emplace_back(std::move(entry.device), entry.recorded);
    }
    volumes_.clear();
  }
  // Graceful detaches share one grace period: once it is spent (a silent
  // server held one up), the rest are forced, so stopping stays bounded.
  const absl::Time grace_end = absl::Now() + engine::kGracefulStopTimeout;
  if (how == OnStop::kKeep) {
    for (auto& [device, recorded] : devices) {
      if (recorded) device->BeginLeave();
    }
  }
  for (auto& [device, recorded] : devices) {
    if (how == OnStop::kKeep) {
      // Only a recorded volume's device can be taken over by the next daemon.
      absl::Status s = recorded ? device->Leave()
                                : absl::FailedPreconditionError(absl::StrCat(
                                      device->block_path(), " is not recorded"));
      if (s.ok()) continue;
      LOG(WARNING) << s << ": detaching it";
    }
    const bool forced = how == OnStop::kForceDetach || absl::Now() >= grace_end;
    if (absl::Status s = device->Detach(forced); !s.ok()) {
      LOG(ERROR) << "detaching " << device->block_path() << ": " << s;
    }
  }
}

}  // namespace ublkgw::control
