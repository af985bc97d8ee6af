// The CLI commands that drive the daemon over its gRPC API: attach,
// detach, list.
#ifndef UBLKGW_CLI_CLIENT_COMMANDS_H_
#define UBLKGW_CLI_CLIENT_COMMANDS_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "ublkgw/v1/ublkgw.pb.h"

namespace ublkgw::cli {

inline constexpr char kDefaultSocket[] = "/run/ublkgw/ublkgw.sock";

struct ClientOptions {
  std::string socket = kDefaultSocket;
  bool json = false;
  int timeout_seconds = 60;
};

struct AttachOptions {
  std::string uri;
  uint32_t queues = 1;
  uint32_t depth = 128;
  std::string data_path = "auto";  // auto | copy
  bool read_only = false;
};

struct DetachOptions {
  std::string target;  // /dev/ublkbN or N
  bool force = false;
};

// A gRPC status as an absl::Status (the codes are the same numbers).
absl::Status FromGrpc(const grpc::Status& status);

int RunAttach(const ClientOptions& client, const AttachOptions& options, std::ostream& out,
              std::ostream& err);
int RunDetach(const ClientOptions& client, const DetachOptions& options, std::ostream& out,
              std::ostream& err);
int RunList(const ClientOptions& client, std::ostream& out, std::ostream& err);

// One volume as a table row and as JSON.
std::string RenderVolumes(const v1::ListResponse& list);

}  // namespace ublkgw::cli

#endif  // UBLKGW_CLI_CLIENT_COMMANDS_H_
