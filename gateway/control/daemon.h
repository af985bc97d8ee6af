// ublkgwd's server: the gRPC API on its listeners (a unix socket; TCP only
// with mutual TLS), the standard health and reflection services, the
// optional metrics listener, and the volume manager behind them.
#ifndef UBLKGW_CONTROL_DAEMON_H_
#define UBLKGW_CONTROL_DAEMON_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"
#include "control/metrics.h"
#include "control/service.h"
#include "control/volume_manager.h"
#include "grpcpp/grpcpp.h"

namespace ublkgw::control {

inline constexpr char kDefaultSocket[] = "/run/ublkgw/ublkgw.sock";
inline constexpr char kDefaultStateDir[] = "/var/lib/ublkgw";

struct DaemonOptions {
  std::string socket = kDefaultSocket;  // empty: no unix socket
  std::string socket_group;             // name: the socket is 0660 for it
  std::string control_device = ublk::kControlDevicePath;
  std::string state_dir = kDefaultStateDir;  // empty: record nothing
  std::string listen;         // HOST:PORT for gRPC over TCP, with mutual TLS
  std::string tls_cert;       // PEM: the server's certificate chain
  std::string tls_key;        // PEM: its private key
  std::string tls_client_ca;  // PEM: the CA that signs client certificates
  std::string metrics_listen;  // HOST:PORT for Prometheus; empty: none
  std::optional<uint32_t> send_zc_min_bytes;  // see ManagerOptions
  std::string disabled_socket_ops;            // e.g. "send,recv"; see ManagerOptions
  std::string disabled_ublk_features;         // e.g. "auto-buf-reg"; likewise
  bool batch_io = false;                      // see DataPathTuning
  engine::ReconnectPolicy reconnect;          // see ManagerOptions
  // Stop (SIGTERM, SIGINT): detach every device, or leave each waiting in
  // the kernel for the next daemon to take over (upgrades, restarts).
  bool keep_devices_on_stop = false;
};

// INVALID_ARGUMENT naming the problem and the fix: a TCP listener without
// all three TLS files (plaintext TCP is refused), TLS files without a
// listener, no listener at all.
absl::Status CheckDaemonOptions(const DaemonOptions& options);

// Teardown order: the gRPC server stops (its streams end), the metrics
// listener stops, then the volumes are detached.
class Daemon {
 public:
  // Checks the options, restores recorded volumes (in the background) and
  // serves. Errors name the option at fault.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(const DaemonOptions& options);
  ~Daemon();

  // Stops serving and detaches every volume (their records stay, so the
  // next daemon attaches them again).
  void Stop();

  // The TCP port gRPC listens on (0 without --listen); the metrics port.
  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }

 private:
  Daemon() = default;

  DaemonOptions options_;
  UniqueFd state_lock_;  // flock on STATE_DIR/lock: one daemon per record
  std::unique_ptr<VolumeManager> volumes_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsServer> metrics_;
  int grpc_port_ = 0;
  bool serving_socket_ = false;  // this daemon made options_.socket
  bool stopped_ = false;
};

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_DAEMON_H_
