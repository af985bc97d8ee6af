#include "control/service.h"

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

grpc::Status Service::GetFeatures(grpc::ServerContext*, const v1::GetFeaturesRequest*,
                                  v1::GetFeaturesResponse* response) {
  auto features = volumes_.GetFeatures();
  if (!features.ok()) return ToGrpcStatus(features.status());
  *response = *std::move(features);
  return grpc::Status::OK;
}

}  // namespace ublkgw::control
