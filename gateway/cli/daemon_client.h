// How the CLI reaches ublkgwd: its unix socket, or TCP with mutual TLS;
// and what every client command shares (targets, JSON, deadlines).
#ifndef UBLKGW_CLI_DAEMON_CLIENT_H_
#define UBLKGW_CLI_DAEMON_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "grpcpp/grpcpp.h"
#include "ublkgw/v1/ublkgw.grpc.pb.h"

namespace ublkgw::cli {

inline constexpr char kDefaultSocket[] = "/run/ublkgw/ublkgw.sock";

struct ClientOptions {
  std::string socket = kDefaultSocket;
  std::string server;  // HOST:PORT: TCP with mutual TLS instead of the socket
  std::string tls_ca;    // PEM: the CA that signed the daemon's certificate
  std::string tls_cert;  // PEM: this client's certificate
  std::string tls_key;   // PEM: its key
  bool json = false;
  int timeout_seconds = 60;
};

// A stub on a channel that has reached the daemon, so an UNAVAILABLE from
// a call is the daemon's answer (an NBD server it cannot reach), never a
// missing daemon. UNAVAILABLE naming the fix when the daemon cannot be
// reached (or refuses our certificate); INVALID_ARGUMENT for unreadable
// TLS files.
absl::StatusOr<std::unique_ptr<v1::Ublkgw::Stub>> ConnectToDaemon(const ClientOptions& client);

void SetDeadline(grpc::ClientContext& ctx, const ClientOptions& client);

// A gRPC status as an absl::Status (the codes are the same numbers).
absl::Status FromGrpc(const grpc::Status& status);

// Protobuf JSON with field names as in the .proto and every field printed.
std::string ToJson(const google::protobuf::Message& m, bool pretty = true);

// A volume named on the command line: N or /dev/ublkbN, into a request's
// `target` oneof. INVALID_ARGUMENT for anything else.
template <typename Request>
absl::Status SetTarget(const std::string& target, Request& request);
absl::StatusOr<std::pair<bool, std::string>> ParseTarget(const std::string& target);

template <typename Request>
absl::Status SetTarget(const std::string& target, Request& request) {
  auto parsed = ParseTarget(target);
  if (!parsed.ok()) return parsed.status();
  if (parsed->first) {
    request.set_device_id(static_cast<uint32_t>(std::stoul(parsed->second)));
  } else {
    request.set_device_path(parsed->second);
  }
  return absl::OkStatus();
}

const char* DataPathName(v1::DataPath path);
const char* HealthName(v1::Health health);

}  // namespace ublkgw::cli

#endif  // UBLKGW_CLI_DAEMON_CLIENT_H_
