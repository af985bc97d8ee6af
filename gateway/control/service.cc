#include "control/service.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "glog/logging.h"

namespace ublkgw::control {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::Status Service::Attach(grpc::ServerContext*, const v1::AttachRequest* request,
                             v1::AttachResponse* response) {
  auto volume = volumes_.Attach(*request);
  if (!volume.ok()) {
    LOG(WARNING) << "attach " << request->uri() << " failed: " << volume.status();
    return ToGrpcStatus(volume.status());
  }
  *response->mutable_volume() = *std::move(volume);
  return grpc::Status::OK;
}

grpc::Status Service::Detach(grpc::ServerContext*, const v1::DetachRequest* request,
                             v1::DetachResponse*) {
  return ToGrpcStatus(volumes_.Detach(*request));
}

grpc::Status Service::List(grpc::ServerContext*, const v1::ListRequest*, v1::ListResponse* response) {
  for (auto& v : volumes_.List()) *response->add_volumes() = std::move(v);
  return grpc::Status::OK;
}

grpc::Status Service::GetVolume(grpc::ServerContext*, const v1::GetVolumeRequest* request,
                                v1::GetVolumeResponse* response) {
  auto ref = RefOf(*request);
  if (!ref.ok()) return ToGrpcStatus(ref.status());
  auto r = volumes_.GetVolume(*ref);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = *std::move(r);
  return grpc::Status::OK;
}

grpc::Status Service::WatchVolume(grpc::ServerContext* context,
                                  const v1::WatchVolumeRequest* request,
                                  grpc::ServerWriter<v1::VolumeStats>* writer) {
  auto ref = RefOf(*request);
  if (!ref.ok()) return ToGrpcStatus(ref.status());
  const uint32_t interval_ms = request->interval_ms() == 0 ? 1000 : request->interval_ms();
  if (interval_ms < kMinWatchIntervalMs || interval_ms > kMaxWatchIntervalMs) {
    return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
        "interval_ms must be ", kMinWatchIntervalMs, " to ", kMaxWatchIntervalMs, ", not ",
        interval_ms)));
  }
  // Each stream holds a server thread: bound them.
  if (watchers_.fetch_add(1) >= kMaxWatchers) {
    watchers_.fetch_sub(1);
    return ToGrpcStatus(absl::ResourceExhaustedError(
        absl::StrCat("already ", kMaxWatchers, " streams watch volumes; end one first")));
  }
  grpc::Status status = grpc::Status::OK;
  const absl::Duration interval = absl::Milliseconds(interval_ms);
  absl::Time next = absl::Now();
  for (uint32_t sent = 0; request->count() == 0 || sent < request->count(); ++sent) {
    // Sleep in short steps so a cancelled client or a stopping server
    // ends the stream promptly.
    while (absl::Now() < next && !context->IsCancelled() && !stopping_.load()) {
      absl::SleepFor(std::min(next - absl::Now(), absl::Milliseconds(50)));
    }
    if (context->IsCancelled() || stopping_.load()) break;
    auto r = volumes_.GetVolume(*ref);
    if (!r.ok()) {
      status = ToGrpcStatus(r.status());
      break;
    }
    v1::VolumeStats stats = r->stats();
    stats.set_device_id(r->volume().device_id());
    stats.set_health(r->volume().health());
    if (!writer->Write(stats)) break;  // the client went away
    next += interval;
  }
  watchers_.fetch_sub(1);
  return status;
}

grpc::Status Service::Resize(grpc::ServerContext*, const v1::ResizeRequest* request,
                             v1::ResizeResponse* response) {
  auto volume = volumes_.Resize(*request);
  if (!volume.ok()) return ToGrpcStatus(volume.status());
  *response->mutable_volume() = *std::move(volume);
  return grpc::Status::OK;
}

grpc::Status Service::GetDaemonInfo(grpc::ServerContext*, const v1::GetDaemonInfoRequest*,
                                    v1::DaemonInfo* response) {
  {
    absl::MutexLock lock(&facts_mu_);
    response->set_version(facts_.version);
    response->set_started_unix_time_ns(static_cast<uint64_t>(absl::ToUnixNanos(facts_.started)));
    for (const auto& l : facts_.listeners) response->add_listeners(l);
  }
  response->set_pid(static_cast<uint32_t>(getpid()));
  volumes_.DescribeDaemon(*response);
  return grpc::Status::OK;
}

grpc::Status Service::GetFeatures(grpc::ServerContext*, const v1::GetFeaturesRequest*,
                                  v1::GetFeaturesResponse* response) {
  auto features = volumes_.GetFeatures();
  if (!features.ok()) return ToGrpcStatus(features.status());
  *response = *std::move(features);
  return grpc::Status::OK;
}

}  // namespace ublkgw::control
