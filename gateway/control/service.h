// The ublkgw.v1 gRPC service: adapts requests to the VolumeManager and
// statuses to gRPC's (the codes are the same numbers).
#ifndef UBLKGW_CONTROL_SERVICE_H_
#define UBLKGW_CONTROL_SERVICE_H_

#include "absl/status/status.h"
#include "control/volume_manager.h"
#include "grpcpp/grpcpp.h"
#include "ublkgw/v1/ublkgw.grpc.pb.h"

namespace ublkgw::control {

grpc::Status ToGrpcStatus(const absl::Status& status);

class Service final : public v1::Ublkgw::Service {
 public:
  explicit Service(VolumeManager& volumes) : volumes_(volumes) {}

  grpc::Status Attach(grpc::ServerContext*, const v1::AttachRequest* request,
                      v1::AttachResponse* response) override;
  grpc::Status Detach(grpc::ServerContext*, const v1::DetachRequest* request,
                      v1::DetachResponse* response) override;
  grpc::Status List(grpc::ServerContext*, const v1::ListRequest* request,
                    v1::ListResponse* response) override;
  grpc::Status GetFeatures(grpc::ServerContext*, const v1::GetFeaturesRequest* request,
                           v1::GetFeaturesResponse* response) override;

 private:
  VolumeManager& volumes_;
};

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_SERVICE_H_
