// The ublkgw.v1 gRPC service: adapts requests to the VolumeManager and
// statuses to gRPC's (the codes are the same numbers).
#ifndef UBLKGW_CONTROL_SERVICE_H_
#define UBLKGW_CONTROL_SERVICE_H_

#include <atomic>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "control/volume_manager.h"
#include "grpcpp/grpcpp.h"
#include "ublkgw/v1/ublkgw.grpc.pb.h"

namespace ublkgw::control {

grpc::Status ToGrpcStatus(const absl::Status& status);

// What the daemon tells GetDaemonInfo beyond what the manager knows.
struct DaemonFacts {
  std::string version;
  std::vector<std::string> listeners;
  absl::Time started = absl::Now();
};

inline constexpr int kMaxWatchers = 64;
inline constexpr uint32_t kMinWatchIntervalMs = 100;
inline constexpr uint32_t kMaxWatchIntervalMs = 3600 * 1000;

class Service final : public v1::Ublkgw::Service {
 public:
  Service(VolumeManager& volumes, DaemonFacts facts)
      : volumes_(volumes), facts_(std::move(facts)) {}

  grpc::Status Attach(grpc::ServerContext*, const v1::AttachRequest* request,
                      v1::AttachResponse* response) override;
  grpc::Status Detach(grpc::ServerContext*, const v1::DetachRequest* request,
                      v1::DetachResponse* response) override;
  grpc::Status List(grpc::ServerContext*, const v1::ListRequest* request,
                    v1::ListResponse* response) override;
  grpc::Status GetVolume(grpc::ServerContext*, const v1::GetVolumeRequest* request,
                         v1::GetVolumeResponse* response) override;
  // Samples until the client cancels, `count` is reached, the volume goes
  // (NOT_FOUND) or the server shuts down. At most kMaxWatchers at once.
  grpc::Status WatchVolume(grpc::ServerContext* context, const v1::WatchVolumeRequest* request,
                           grpc::ServerWriter<v1::VolumeStats>* writer) override;
  grpc::Status Resize(grpc::ServerContext*, const v1::ResizeRequest* request,
                      v1::ResizeResponse* response) override;
  grpc::Status GetDaemonInfo(grpc::ServerContext*, const v1::GetDaemonInfoRequest* request,
                             v1::DaemonInfo* response) override;
  grpc::Status GetFeatures(grpc::ServerContext*, const v1::GetFeaturesRequest* request,
                           v1::GetFeaturesResponse* response) override;

  // The listeners as bound (a port 0 becomes the one chosen).
  void SetListeners(std::vector<std::string> listeners) ABSL_LOCKS_EXCLUDED(facts_mu_) {
    absl::MutexLock lock(&facts_mu_);
    facts_.listeners = std::move(listeners);
  }

  // Ends every WatchVolume stream (the server is shutting down).
  void StopWatches() { stopping_.store(true); }

 private:
  VolumeManager& volumes_;
  absl::Mutex facts_mu_;
  DaemonFacts facts_ ABSL_GUARDED_BY(facts_mu_);
  std::atomic<int> watchers_{0};
  std::atomic<bool> stopping_{false};
};

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_SERVICE_H_
