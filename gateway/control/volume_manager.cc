#include "control/volume_manager.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "control/host_facts.h"
#include "engine/export_connection.h"
#include "glog/logging.h"
#include "ublk/io_queue.h"

namespace ublkgw::control {

VolumeManager::VolumeManager(ManagerOptions options)
    : VolumeManager(options, OpenUblkHost(options.control_path)) {}

VolumeManager::VolumeManager(ManagerOptions options, std::unique_ptr<UblkHost> driver)
    : options_(std::move(options)),
      recording_(!options_.state_dir.empty()),
      driver_(std::move(driver)),
      restorer_(*this, *driver_, options_, !options_.state_dir.empty()) {
  if (!options_.state_dir.empty()) store_.emplace(options_.state_dir);
}

VolumeManager::~VolumeManager() { Shutdown(OnStop::kForceDetach); }

VolumeManager::Table::iterator VolumeManager::Find(const VolumeRef& ref) {
  if (ref.id.has_value()) return volumes_.find(*ref.id);
  for (auto it = volumes_.begin(); it != volumes_.end(); ++it) {
    if (ublk::BlockDevicePath(it->first) == ref.path) return it;
  }
  return volumes_.end();
}

v1::Volume VolumeManager::Describe(uint32_t id, const Entry& entry) const {
  const v1::AttachRequest& asked = entry.record.request();
  if (entry.device == nullptr) {
    return DescribeRestoring(id, asked, entry.restore, options_.reconnect, absl::Now());
  }
  return DescribeAttached(*entry.device, asked, options_.reconnect);
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
  // Every volume in the table now is on disk as it is (the table changes
  // only under ctrl_mu_); one not saved before keeps its flag till now.
  absl::MutexLock lock(&mu_);
  for (auto& [id, entry] : volumes_) entry.recorded = true;
  return s;
}

absl::StatusOr<std::unique_ptr<engine::Device>> VolumeManager::CreateDevice(
    engine::AttachOptions options, engine::ConnectedExport connected) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("the daemon is stopping");
    for (const auto& [other, entry] : volumes_) {
      if (entry.device == nullptr) options.reserved_ids.insert(other);
    }
  }
  return driver_->Create(options, std::move(connected));
}

absl::StatusOr<v1::Volume> VolumeManager::Attach(const v1::AttachRequest& request) {
  auto options = AttachOptionsFor(request, options_);
  if (!options.ok()) return options.status();
  // A host without ublk is said so before anything touches the network.
  if (absl::Status s = driver_->Check(); !s.ok()) return s;
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
  MayOutlive(recording_.load(), 0, *options);
  auto device = connected.ok() ? CreateDevice(*options, *std::move(connected))
                               : absl::StatusOr<std::unique_ptr<engine::Device>>(connected.status());
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
    entry.serial = ++last_serial_;
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
  // What is read here holds until the entry is erased below: the table's
  // membership changes only under ctrl_mu_, held throughout, and so does a
  // restore attempt's step past kConnecting (BeginMaking).
  v1::AttachmentRecord record;
  bool attached = false;
  RestoreStep step = RestoreStep::kIdle;
  {
    absl::MutexLock lock(&mu_);
    auto it = Find(*ref);
    if (it == volumes_.end()) return VolumeNotFound(*ref);
    record = it->second.record;
    attached = it->second.device != nullptr;
    step = it->second.step;
  }
  if (step == RestoreStep::kAdopting) {
    // Neither removed under the takeover nor forgotten while it may succeed
    // (a left device with no record would hold its I/O for ever).
    return absl::UnavailableError(absl::StrCat(
        ublk::BlockDevicePath(record.device_id()),
        " is being taken over from the previous ublkgwd right now; try again in a moment"));
  }
  // Not attached (yet): a device a previous daemon left for it goes first;
  // if it cannot, the volume stays. (kCreating: the attempt, finding the
  // volume gone in FinishRestore, detaches the device it makes.)
  if (!attached && step != RestoreStep::kCreating) {
    if (absl::Status removed = RemoveLeftDevice(*driver_, record); !removed.ok()) return removed;
  }
  std::shared_ptr<engine::Device> device;
  {
    absl::MutexLock lock(&mu_);
    auto it = volumes_.find(record.device_id());
    if (it == volumes_.end()) return VolumeNotFound(*ref);
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

std::vector<v1::Volume> VolumeManager::List() {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Volume> out;
  for (const auto& [id, entry] : volumes_) out.push_back(Describe(id, entry));
  return out;
}

absl::StatusOr<v1::GetVolumeResponse> VolumeManager::GetVolume(const VolumeRef& ref) {
  absl::MutexLock lock(&mu_);
  auto it = Find(ref);
  if (it == volumes_.end()) return VolumeNotFound(ref);
  const Entry& entry = it->second;
  if (entry.device != nullptr) {
    return DescribeWithStats(*entry.device, entry.record.request(), options_.reconnect);
  }
  v1::GetVolumeResponse r;
  *r.mutable_volume() = Describe(it->first, entry);
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
    if (it == volumes_.end()) return VolumeNotFound(*ref);
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
  if (it == volumes_.end()) return VolumeNotFound({id, ""});
  return Describe(id, it->second);
}

absl::StatusOr<v1::GetFeaturesResponse> VolumeManager::GetFeatures() {
  auto mask = driver_->GetFeatures();
  if (!mask.ok()) return mask.status();
  return FeaturesResponse(*mask);
}

void VolumeManager::DescribeDaemon(v1::DaemonInfo& info) {
  DescribeHost(GetFeatures(), info);
  info.set_state_dir(options_.state_dir);
  absl::MutexLock lock(&mu_);
  info.set_volumes(static_cast<uint32_t>(volumes_.size()));
}

absl::Status VolumeManager::LoadRecords() {
  absl::MutexLock ctrl_lock(&ctrl_mu_);
  if (!store_.has_value()) return absl::OkStatus();
  auto records = store_->Load();
  if (!records.ok()) {
    LOG(ERROR) << records.status();
    if (absl::IsFailedPrecondition(records.status())) {
      // A newer daemon's record: never overwrite it.
      store_.reset();
      recording_ = false;
    }
    return records.status();
  }
  absl::MutexLock lock(&mu_);
  for (auto& [record, progress] :
       RecordedVolumes(*records, kMaxVolumes, store_->path(), absl::Now())) {
    auto [it, fresh] = volumes_.try_emplace(record.device_id());
    if (!fresh) continue;  // attached already: LoadRecords was called late
    Entry& entry = it->second;
    entry.serial = ++last_serial_;
    entry.record = std::move(record);
    entry.recorded = true;
    entry.restore = std::move(progress);
    entry.backoff = options_.restore_backoff_min;
  }
  if (!records->empty()) {
    LOG(INFO) << "restoring " << records->size() << " recorded volume(s) from " << store_->path();
  }
  return absl::OkStatus();
}

void VolumeManager::StartRestorer() { restorer_.Start(); }

VolumeManager::Table::iterator VolumeManager::FindClaimed(const RestoreClaim& claim) {
  // Another serial under the id: the claimed volume was detached, its id reused.
  auto it = volumes_.find(claim.id);
  return it != volumes_.end() && it->second.serial == claim.serial ? it : volumes_.end();
}

RestoreHost::Schedule VolumeManager::RestoreSchedule(absl::Time now) {
  absl::MutexLock lock(&mu_);
  Schedule schedule;
  if (stopping_) return schedule;
  for (const auto& [id, entry] : volumes_) {
    if (entry.device != nullptr || entry.step != RestoreStep::kIdle) continue;
    if (entry.restore.next_try <= now) {
      schedule.due.push_back(id);
    } else {
      schedule.next = std::min(schedule.next, entry.restore.next_try);
    }
  }
  return schedule;
}

std::optional<RestoreClaim> VolumeManager::ClaimForRestore(uint32_t id) {
  absl::MutexLock lock(&mu_);
  auto it = volumes_.find(id);
  // Detached or attached meanwhile, claimed by another attempt (never two
  // at once for a volume), or the daemon is stopping.
  if (stopping_ || it == volumes_.end() || it->second.device != nullptr ||
      it->second.step != RestoreStep::kIdle) {
    return std::nullopt;
  }
  it->second.step = RestoreStep::kConnecting;
  return RestoreClaim{id, it->second.serial, it->second.record, it->second.backoff};
}

std::optional<std::set<uint32_t>> VolumeManager::BeginMaking(const RestoreClaim& claim,
                                                             bool adopting) {
  // Under ctrl_mu_: a detach that is removing this volume's left device
  // (under ctrl_mu_ throughout) has either finished, and the volume is gone,
  // or not begun, and it will see kCreating or kAdopting.
  absl::MutexLock ctrl_lock(&ctrl_mu_);
  absl::MutexLock lock(&mu_);
  auto it = FindClaimed(claim);
  if (it == volumes_.end()) return std::nullopt;  // detached meanwhile
  if (stopping_) {
    it->second.step = RestoreStep::kIdle;
    return std::nullopt;
  }
  it->second.step = adopting ? RestoreStep::kAdopting : RestoreStep::kCreating;
  it->second.restore.left_in_kernel = adopting;
  std::set<uint32_t> reserved;
  for (const auto& [other, entry] : volumes_) {
    if (entry.device == nullptr && other != claim.id) reserved.insert(other);
  }
  return reserved;
}

bool VolumeManager::FinishRestore(const RestoreClaim& claim, RestoreResult& result) {
  absl::MutexLock ctrl_lock(&ctrl_mu_);
  {
    absl::MutexLock lock(&mu_);
    auto it = FindClaimed(claim);
    if (it == volumes_.end()) return false;
    Entry& entry = it->second;
    entry.step = RestoreStep::kIdle;
    if (!result.device.ok()) {
      entry.restore.left_in_kernel = result.adopting;
      entry.restore.error = std::string(result.device.status().message());
      entry.restore.next_try = absl::Now() + result.retry_in;
      entry.backoff = result.next_backoff;
      return true;
    }
    // Even while stopping: Shutdown takes the table only once every attempt
    // has ended, and ends this device with the others.
    Install(it, *std::move(result.device), result.cookie);
  }
  (void)SaveRecords();  // a new id, or a mark now or no more (logged if it fails)
  return true;
}

void VolumeManager::Install(Table::iterator it, std::unique_ptr<engine::Device> device,
                            uint64_t cookie) {
  const uint32_t id = it->first;
  const uint32_t got = device->id();
  Entry& entry = it->second;
  entry.restore = RestoreProgress{};
  // A device made again gets its own mark (none if it cannot outlive us),
  // and is not recorded as it is until the record is saved.
  if (!device->recoverable()) cookie = 0;
  if (got != id || cookie != entry.record.device_cookie()) entry.recorded = false;
  entry.record.set_device_cookie(cookie);
  entry.device = std::move(device);
  if (got != id) {
    // Its old id was taken meanwhile: it lives on under the new one (never
    // one reserved for another restoring volume, so nothing is overwritten).
    DCHECK(!volumes_.contains(got)) << "two volumes on /dev/ublkb" << got;
    Entry renamed = std::move(entry);
    volumes_.erase(it);
    renamed.record.set_device_id(got);
    volumes_[got] = std::move(renamed);
  }
}

void VolumeManager::Shutdown(OnStop how) {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  // The attempts under way end first (bounded; none makes a device once it
  // sees stopping_); a device one made is in the table by then.
  restorer_.Stop();
  std::vector<StoppingDevice> devices;
  {
    absl::MutexLock ctrl_lock(&ctrl_mu_);
    absl::MutexLock lock(&mu_);
    for (auto& [id, entry] : volumes_) {
      if (entry.device) devices.push_back({std::move(entry.device), entry.recorded});
    }
    volumes_.clear();
  }
  StopDevices(std::move(devices), how);
}

}  // namespace ublkgw::control
