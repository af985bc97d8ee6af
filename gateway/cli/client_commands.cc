#include "cli/client_commands.h"

#include <unistd.h>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/exit_codes.h"
#include "cli/output.h"
#include "google/protobuf/util/json_util.h"
#include "ublkgw/v1/ublkgw.grpc.pb.h"

namespace ublkgw::cli {

namespace {

// A stub on a channel that has reached the daemon, so an UNAVAILABLE from
// a call is the daemon's answer (an NBD server it cannot reach), never a
// missing daemon.
absl::StatusOr<std::unique_ptr<v1::Ublkgw::Stub>> Connect(const ClientOptions& client) {
  const auto no_daemon = absl::UnavailableError(absl::StrCat(
      "cannot reach ublkgwd on unix:", client.socket, ": is the daemon running? (start it "
      "with 'ublkgwd', or 'systemctl start ublkgwd')"));
  if (access(client.socket.c_str(), F_OK) != 0) return no_daemon;
  auto channel = grpc::CreateChannel("unix:" + client.socket, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
    return no_daemon;
  }
  return v1::Ublkgw::NewStub(channel);
}

void SetDeadline(grpc::ClientContext& ctx, const ClientOptions& client) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(client.timeout_seconds));
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &json, options);
  return json;
}

const char* DataPathName(v1::DataPath path) {
  return path == v1::DATA_PATH_COPY ? "copy" : "auto";
}

}  // namespace

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

std::string RenderVolumes(const v1::ListResponse& list) {
  std::string out = absl::StrFormat("%-14s %-10s %-6s %-6s %-5s %-3s %s\n", "DEVICE", "SIZE", "QUEUES",
                                    "DEPTH", "PATH", "RO", "URI");
  for (const auto& v : list.volumes()) {
    absl::StrAppendFormat(&out, "%-14s %-10s %-6d %-6d %-5s %-3s %s\n", v.device_path(),
                          HumanSize(v.size_bytes()), v.queues(), v.depth(),
                          DataPathName(v.data_path()), v.read_only() ? "yes" : "no", v.uri());
  }
  if (list.volumes().empty()) out += "(no volumes attached)\n";
  return out;
}

int RunAttach(const ClientOptions& client, const AttachOptions& options, std::ostream& out,
              std::ostream& err) {
  v1::AttachRequest request;
  request.set_uri(options.uri);
  request.set_queues(options.queues);
  request.set_depth(options.depth);
  request.set_read_only(options.read_only);
  if (options.data_path == "copy") {
    request.set_data_path(v1::DATA_PATH_COPY);
  } else if (options.data_path != "auto") {
    return ReportError(absl::InvalidArgumentError(absl::StrCat(
                           "unknown data path '", options.data_path, "': use auto or copy")),
                       client.json, out, err);
  }
  grpc::ClientContext ctx;
  SetDeadline(ctx, client);
  v1::AttachResponse response;
  auto stub = Connect(client);
  if (!stub.ok()) return ReportError(stub.status(), client.json, out, err);
  const grpc::Status s = (*stub)->Attach(&ctx, request, &response);
  if (!s.ok()) return ReportError(FromGrpc(s), client.json, out, err);
  if (client.json) {
    out << ToJson(response.volume());
  } else {
    if (!response.volume().note().empty()) err << "ublkgw: note: " << response.volume().note() << "\n";
    out << response.volume().device_path() << "\n";
  }
  return kExitOk;
}

int RunDetach(const ClientOptions& client, const DetachOptions& options, std::ostream& out,
              std::ostream& err) {
  v1::DetachRequest request;
  uint32_t id = 0;
  if (absl::SimpleAtoi(options.target, &id)) {
    request.set_device_id(id);
  } else if (options.target.rfind("/dev/ublkb", 0) == 0) {
    request.set_device_path(options.target);
  } else {
    return ReportError(absl::InvalidArgumentError(absl::StrCat(
                           "'", options.target, "' is neither a device id nor /dev/ublkbN")),
                       client.json, out, err);
  }
  request.set_force(options.force);
  grpc::ClientContext ctx;
  SetDeadline(ctx, client);
  v1::DetachResponse response;
  auto stub = Connect(client);
  if (!stub.ok()) return ReportError(stub.status(), client.json, out, err);
  const grpc::Status s = (*stub)->Detach(&ctx, request, &response);
  if (!s.ok()) return ReportError(FromGrpc(s), client.json, out, err);
  if (client.json) out << "{}\n";
  return kExitOk;
}

int RunList(const ClientOptions& client, std::ostream& out, std::ostream& err) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, client);
  v1::ListResponse response;
  auto stub = Connect(client);
  if (!stub.ok()) return ReportError(stub.status(), client.json, out, err);
  const grpc::Status s = (*stub)->List(&ctx, v1::ListRequest{}, &response);
  if (!s.ok()) return ReportError(FromGrpc(s), client.json, out, err);
  out << (client.json ? ToJson(response) : RenderVolumes(response));
  return kExitOk;
}

}  // namespace ublkgw::cli
