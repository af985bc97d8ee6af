#include "cli/daemon_client.h"

#include <unistd.h>


#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "google/protobuf/util/json_util.h"

namespace ublkgw::cli {

namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* option) {
  auto text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", option, " ", text.status().message()));
  }
  return text;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> TlsChannel(const ClientOptions& c) {
  if (c.tls_ca.empty() || c.tls_cert.empty() || c.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--server needs --tls-ca, --tls-cert and --tls-key: the daemon serves TCP only with "
        "mutual TLS");
  }
  grpc::SslCredentialsOptions ssl;
  auto ca = ReadPem(c.tls_ca, "--tls-ca");
  if (!ca.ok()) return ca.status();
  auto cert = ReadPem(c.tls_cert, "--tls-cert");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(c.tls_key, "--tls-key");
  if (!key.ok()) return key.status();
  ssl.pem_root_certs = *ca;
  ssl.pem_cert_chain = *cert;
  ssl.pem_private_key = *key;
  return grpc::CreateChannel(c.server, grpc::SslCredentials(ssl));
}

}  // namespace

absl::StatusOr<std::unique_ptr<v1::Ublkgw::Stub>> ConnectToDaemon(const ClientOptions& client) {
  std::shared_ptr<grpc::Channel> channel;
  absl::Status unreachable;
  if (!client.server.empty()) {
    auto tls = TlsChannel(client);
    if (!tls.ok()) return tls.status();
    channel = *tls;
    unreachable = absl::UnavailableError(absl::StrCat(
        "cannot reach ublkgwd at ", client.server,
        " over mutual TLS: is it running with --listen there, and was this client's certificate "
        "signed by its --tls-client-ca (and its certificate by --tls-ca)?"));
  } else {
    unreachable = absl::UnavailableError(absl::StrCat(
        "cannot reach ublkgwd on unix:", client.socket,
        ": is the daemon running? (start it with 'ublkgwd', or 'systemctl start ublkgwd')"));
    if (access(client.socket.c_str(), F_OK) != 0) return unreachable;
    if (access(client.socket.c_str(), R_OK | W_OK) != 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          "no permission to use ", client.socket,
          ": run as root, or as a member of the daemon's --socket-group"));
    }
    channel = grpc::CreateChannel("unix:" + client.socket, grpc::InsecureChannelCredentials());
  }
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
    return unreachable;
  }
  return v1::Ublkgw::NewStub(channel);
}

void SetDeadline(grpc::ClientContext& ctx, const ClientOptions& client) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(client.timeout_seconds));
}

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

std::string ToJson(const google::protobuf::Message& m, bool pretty) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &json, options);
  if (!pretty) json += "\n";
  return json;
}

absl::StatusOr<std::pair<bool, std::string>> ParseTarget(const std::string& target) {
  uint32_t id = 0;
  if (absl::SimpleAtoi(target, &id)) return std::pair{true, absl::StrCat(id)};
  if (target.rfind("/dev/ublkb", 0) == 0) return std::pair{false, target};
  return absl::InvalidArgumentError(
      absl::StrCat("'", target, "' is neither a device id N nor /dev/ublkbN ('ublkgw list' shows them)"));
}

const char* DataPathName(v1::DataPath path) {
  switch (path) {
    case v1::DATA_PATH_COPY:
      return "copy";
    case v1::DATA_PATH_ZERO_COPY:
      return "zero-copy";
    case v1::DATA_PATH_FUSED:
      return "fused";
    default:
      return "auto";
  }
}

const char* HealthName(v1::Health health) {
  switch (health) {
    case v1::HEALTH_OK:
      return "ok";
    case v1::HEALTH_DISCONNECTED:
      return "disconnected";
    case v1::HEALTH_RESTORING:
      return "restoring";
    case v1::HEALTH_RECONNECTING:
      return "reconnecting";
    default:
      return "unknown";
  }
}

}  // namespace ublkgw::cli
