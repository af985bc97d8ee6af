#include "control/volume_manager.h"

#include <sys/utsname.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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
  if (r.data_path() != v1::DATA_PATH_UNSPECIFIED && r.data_path() != v1::DATA_PATH_COPY) {
    return absl::InvalidArgumentError(absl::StrCat("unknown data path ", r.data_path()));
  }
  options.queues = static_cast<uint16_t>(queues);
  options.depth = static_cast<uint16_t>(depth);
  options.read_only = r.read_only();
  return options;
}

}  // namespace

VolumeManager::~VolumeManager() { DetachAll(/*force=*/true); }

absl::StatusOr<ublk::ControlDevice*> VolumeManager::Control() {
  if (!control_.has_value()) {
    auto opened = ublk::ControlDevice::Open(control_path_);
    if (!opened.ok()) return opened.status();
    control_.emplace(*std::move(opened));
  }
  return &*control_;
}

v1::Volume VolumeManager::Describe(const engine::Device& device) {
  v1::Volume v;
  v.set_device_id(device.id());
  v.set_device_path(device.block_path());
  v.set_uri(device.uri());
  v.set_queues(device.queues());
  v.set_depth(device.depth());
  v.set_data_path(v1::DATA_PATH_COPY);
  v.set_read_only(device.read_only());
  v.set_size_bytes(device.export_info().size);
  for (const auto& name : nbd::TransmissionFlagNames(device.export_info().flags)) {
    v.add_transmission_flags(name);
  }
  v.set_note(device.note());
  v.set_completed_requests(device.completed());
  v.set_failed_requests(device.failed());
  return v;
}

absl::StatusOr<v1::Volume> VolumeManager::Attach(const v1::AttachRequest& request) {
  auto options = Validate(request);
  if (!options.ok()) return options.status();
  // Parse before touching the kernel: a wrong URI is the caller's mistake
  // on any host.
  if (auto uri = nbd::ParseUri(options->uri); !uri.ok()) return uri.status();
  absl::MutexLock lock(&mu_);
  if (volumes_.size() >= kMaxVolumes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("this daemon already serves ", kMaxVolumes, " volumes"));
  }
  auto ctrl = Control();
  if (!ctrl.ok()) return ctrl.status();
  auto device = engine::Device::Attach(**ctrl, *options);
  if (!device.ok()) return device.status();
  v1::Volume volume = Describe(**device);
  volumes_[(*device)->id()] = *std::move(device);
  return volume;
}

absl::Status VolumeManager::Detach(const v1::DetachRequest& request) {
  absl::MutexLock lock(&mu_);
  auto it = volumes_.end();
  if (request.has_device_id()) {
    it = volumes_.find(request.device_id());
  } else if (request.has_device_path()) {
    for (auto v = volumes_.begin(); v != volumes_.end(); ++v) {
      if (v->second->block_path() == request.device_path()) it = v;
    }
  } else {
    return absl::InvalidArgumentError("name the volume: a device id or a path like /dev/ublkb0");
  }
  if (it == volumes_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "no volume ",
        request.has_device_id() ? absl::StrCat(request.device_id()) : request.device_path(),
        " is attached by this daemon ('ublkgw list' shows them)"));
  }
  absl::Status s = it->second->Detach(request.force());
  volumes_.erase(it);
  return s;
}

std::vector<v1::Volume> VolumeManager::List() {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Volume> out;
  for (const auto& [id, device] : volumes_) out.push_back(Describe(*device));
  return out;
}

absl::StatusOr<v1::GetFeaturesResponse> VolumeManager::GetFeatures() {
  absl::MutexLock lock(&mu_);
  auto ctrl = Control();
  if (!ctrl.ok()) return ctrl.status();
  auto mask = (*ctrl)->GetFeatures();
  if (!mask.ok()) return mask.status();
  v1::GetFeaturesResponse r;
  utsname u{};
  if (uname(&u) == 0) r.set_kernel_release(u.release);
  r.set_mask(*mask);
  for (const auto& f : ublk::FeaturesIn(*mask)) r.add_supported(std::string(f.name));
  r.add_data_paths("copy");
  return r;
}

void VolumeManager::DetachAll(bool force) {
  absl::MutexLock lock(&mu_);
  for (auto& [id, device] : volumes_) {
    if (absl::Status s = device->Detach(force); !s.ok()) {
      LOG(ERROR) << "detaching " << device->block_path() << ": " << s;
    }
  }
  volumes_.clear();
}

}  // namespace ublkgw::control
