// Device::Resize: a live device's capacity, within what its connections
// negotiated.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/device.h"
#include "glog/logging.h"
#include "nbd/blocking_client.h"

namespace ublkgw::engine {

absl::Status Device::Resize(uint64_t size_bytes) {
  absl::MutexLock lock(&op_mu_);
  if (!attached_) return absl::FailedPreconditionError(absl::StrCat(block_path(), " is detached"));
  auto features = driver_->GetFeatures();
  if (!features.ok()) return features.status();
  if ((*features & ublk::kFUpdateSize) == 0) {
    return absl::FailedPreconditionError(
        "this kernel's ublk driver cannot resize a live device (it lacks UBLK_F_UPDATE_SIZE, "
        "added in Linux 6.14): detach and attach again to see a new size");
  }
  // Within what the connections negotiated, the server need not be asked
  // (a server that takes one client at a time could not answer anyway).
  nbd::ExportInfo current = info_;
  if (size_bytes == 0 || size_bytes > info_.size) {
    auto uri = nbd::ParseUri(uri_);
    if (!uri.ok()) return uri.status();
    nbd::ClientOptions probe;
    probe.timeout = absl::Seconds(10);
    auto client = nbd::BlockingClient::Connect(*uri, probe);
    if (!client.ok()) return client.status();
    current = client->info();
    (void)client->Disconnect();
    if (current.flags != info_.flags || current.mode != info_.mode) {
      return absl::FailedPreconditionError(
          "the server now describes the export with other flags; detach and attach again");
    }
  }
  const uint64_t target = size_bytes == 0 ? current.size : size_bytes;
  const uint64_t block = std::max<uint64_t>(512, info_.min_block);
  if (target == 0 || target % block != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the size must be a positive multiple of the block size (", block,
                     " bytes), not ", target));
  }
  if (target > current.size) {
    return absl::InvalidArgumentError(
        absl::StrCat("the export is ", current.size, " bytes; the device cannot be larger (",
                     target, "): grow the export on the server first"));
  }
  // NBD fixes an export's size for the life of a connection: the server
  // refuses requests past the size it told this device's connections.
  if (target > info_.size) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the export is now ", current.size, " bytes, but this device's NBD connections were "
        "opened when it was ", info_.size, " and the server holds each connection to that size; "
        "growing past it needs new connections: detach and attach again"));
  }
  // Growing: the workers accept the new range before the kernel sends it.
  // Shrinking: the kernel stops sending it before the workers refuse it.
  if (target > size()) {
    for (auto& w : workers_) w->SetSizeLimit(target);
  }
  if (absl::Status s = driver_->UpdateSize(id_, target >> 9); !s.ok()) {
    for (auto& w : workers_) w->SetSizeLimit(size());
    return s;
  }
  for (auto& w : workers_) w->SetSizeLimit(target);
  LOG(INFO) << block_path() << ": resized from " << size() << " to " << target << " bytes";
  size_ = target;
  return absl::OkStatus();
}

}  // namespace ublkgw::engine
