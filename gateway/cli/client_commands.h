// The CLI commands that drive the daemon over its gRPC API: attach,
// detach, list, resize, daemon-info. (stats: stats_command.h)
#ifndef UBLKGW_CLI_CLIENT_COMMANDS_H_
#define UBLKGW_CLI_CLIENT_COMMANDS_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "cli/daemon_client.h"
#include "ublkgw/v1/ublkgw.pb.h"

namespace ublkgw::cli {

struct AttachOptions {
  std::string uri;
  uint32_t queues = 1;
  uint32_t depth = 128;
  std::string data_path = "auto";  // auto | copy | zero-copy
  bool read_only = false;
  // Seconds; negative: the daemon's (--io-timeout, --reconnect-deadline).
  double io_timeout_s = -1;
  double reconnect_deadline_s = -1;
};

struct DetachOptions {
  std::string target;  // /dev/ublkbN or N
  bool force = false;
};

struct ResizeOptions {
  std::string target;
  std::string size;  // bytes, or with a K/M/G/T suffix (powers of 1024); "" = the export's
};

// One unary RPC on a fresh connection to the daemon.
template <typename Request, typename Response>
absl::StatusOr<Response> Call(const ClientOptions& client,
                              grpc::Status (v1::Ublkgw::Stub::*method)(grpc::ClientContext*,
                                                                       const Request&, Response*),
                              const Request& request) {
  auto stub = ConnectToDaemon(client);
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  SetDeadline(ctx, client);
  Response response;
  const grpc::Status s = ((**stub).*method)(&ctx, request, &response);
  if (!s.ok()) return FromGrpc(s);
  return response;
}

int RunAttach(const ClientOptions& client, const AttachOptions& options, std::ostream& out,
              std::ostream& err);
int RunDetach(const ClientOptions& client, const DetachOptions& options, std::ostream& out,
              std::ostream& err);
int RunList(const ClientOptions& client, std::ostream& out, std::ostream& err);
int RunResize(const ClientOptions& client, const ResizeOptions& options, std::ostream& out,
              std::ostream& err);
int RunDaemonInfo(const ClientOptions& client, std::ostream& out, std::ostream& err);

// The volumes as a table (with health, and what is wrong below a volume
// that is not healthy).
std::string RenderVolumes(const v1::ListResponse& list);
// "10G", "512M", "4096" -> bytes. INVALID_ARGUMENT otherwise.
absl::StatusOr<uint64_t> ParseSize(const std::string& text);

}  // namespace ublkgw::cli

#endif  // UBLKGW_CLI_CLIENT_COMMANDS_H_
