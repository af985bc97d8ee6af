#include "control/daemon.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/file.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "glog/logging.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

#ifndef UBLKGW_VERSION
#define UBLKGW_VERSION "unknown"
#endif

namespace ublkgw::control {

namespace {

// Requests are small; anything bigger is hostile or a mistake.
constexpr int kMaxRequestBytes = 64 * 1024;

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* option) {
  auto text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", option, " ", text.status().message()));
  }
  if (text->find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(option, " ", path, " is not a PEM file"));
  }
  return text;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsCredentials(const DaemonOptions& o) {
  auto cert = ReadPem(o.tls_cert, "--tls-cert");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(o.tls_key, "--tls-key");
  if (!key.ok()) return key.status();
  auto ca = ReadPem(o.tls_client_ca, "--tls-client-ca");
  if (!ca.ok()) return ca.status();
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = *ca;
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(ssl);
}

// Opens the socket to `group`: 0660, owned by it.
absl::Status ShareSocket(const std::string& socket, const std::string& group_name) {
  struct group buf{};
  struct group* found = nullptr;
  std::vector<char> scratch(16384);
  if (getgrnam_r(group_name.c_str(), &buf, scratch.data(), scratch.size(), &found) != 0 ||
      found == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--socket-group: no group named '", group_name, "' (create it with groupadd)"));
  }
  if (chown(socket.c_str(), static_cast<uid_t>(-1), found->gr_gid) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("chown of ", socket, " to group ", group_name));
  }
  if (chmod(socket.c_str(), 0660) != 0) return ErrnoToStatus(errno, absl::StrCat("chmod of ", socket));
  return absl::OkStatus();
}

// Whether a daemon answers on `path` (a stale socket refuses).
bool SocketIsLive(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (!fd.valid() || path.size() >= sizeof(addr.sun_path)) return false;
  memcpy(addr.sun_path, path.data(), path.size());
  return connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

// One daemon per state directory: an exclusive lock on its lock file, held
// for the daemon's life (the kernel drops it when the process dies).
absl::StatusOr<UniqueFd> LockStateDir(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::create_directories(dir, ec)) chmod(dir.c_str(), 0700);
  const std::string path = dir + "/lock";
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    return ErrnoToStatus(errno, absl::StrCat("opening ", path, " (is --state-dir writable?)"));
  }
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "another ublkgwd uses the state directory ", dir, ": stop it first, or give this one "
        "its own --state-dir"));
  }
  return fd;
}

}  // namespace

absl::Status CheckDaemonOptions(const DaemonOptions& o) {
  if (auto ops = engine::ParseSocketOps(o.disabled_socket_ops); !ops.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--disable-socket-ops: ", ops.status().message()));
  }
  if (o.reconnect.io_timeout < absl::ZeroDuration() ||
      o.reconnect.reconnect_deadline < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "--io-timeout and --reconnect-deadline take seconds, 0 or more");
  }
  if (auto features = engine::ParseUblkFeatures(o.disabled_ublk_features); !features.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--disable-ublk-features: ", features.status().message()));
  }
  if (o.keep_devices_on_stop && o.state_dir.empty()) {
    return absl::InvalidArgumentError(
        "--on-stop keep needs a --state-dir: the next ublkgwd finds the devices it is to take "
        "over in the record there");
  }
  const bool any_tls = !o.tls_cert.empty() || !o.tls_key.empty() || !o.tls_client_ca.empty();
  const bool all_tls = !o.tls_cert.empty() && !o.tls_key.empty() && !o.tls_client_ca.empty();
  if (!o.listen.empty() && !all_tls) {
    return absl::InvalidArgumentError(absl::StrCat(
        "refusing to serve the API on TCP ", o.listen,
        " without mutual TLS: anyone who reaches the port could attach and detach disks. "
        "Give --tls-cert, --tls-key and --tls-client-ca (see docs/API.md), or use the unix "
        "socket"));
  }
  if (o.listen.empty() && any_tls) {
    return absl::InvalidArgumentError(
        "--tls-cert, --tls-key and --tls-client-ca apply to a TCP listener: add --listen HOST:PORT");
  }
  if (o.listen.empty() && o.socket.empty()) {
    return absl::InvalidArgumentError("no listener: give --socket PATH or --listen HOST:PORT");
  }
  if (!o.socket_group.empty() && o.socket.empty()) {
    return absl::InvalidArgumentError("--socket-group needs a --socket");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(const DaemonOptions& options) {
  if (absl::Status s = CheckDaemonOptions(options); !s.ok()) return s;
  std::unique_ptr<Daemon> d(new Daemon());
  d->options_ = options;

  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxRequestBytes);
  DaemonFacts facts;
  facts.version = UBLKGW_VERSION;
  if (!options.state_dir.empty()) {
    auto lock = LockStateDir(options.state_dir);
    if (!lock.ok()) return lock.status();
    d->state_lock_ = *std::move(lock);
  }
  if (!options.socket.empty()) {
    if (SocketIsLive(options.socket)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "another ublkgwd serves on ", options.socket, ": stop it first, or give this one "
          "its own --socket and --state-dir"));
    }
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(options.socket).parent_path(), ec);
    std::filesystem::remove(options.socket, ec);  // a stale socket from a dead daemon
    builder.AddListeningPort("unix:" + options.socket, grpc::InsecureServerCredentials());
    facts.listeners.push_back("unix:" + options.socket);
  }
  if (!options.listen.empty()) {
    auto creds = TlsCredentials(options);
    if (!creds.ok()) return creds.status();
    builder.AddListeningPort(options.listen, *creds, &d->grpc_port_);
    facts.listeners.push_back(absl::StrCat(options.listen, " (mutual TLS)"));
  }

  ManagerOptions manager;
  manager.control_path = options.control_device;
  manager.state_dir = options.state_dir;
  // Both lists were checked by CheckDaemonOptions.
  manager.tuning.send_zc_min_bytes = options.send_zc_min_bytes;
  manager.tuning.disabled_ops = *engine::ParseSocketOps(options.disabled_socket_ops);
  manager.tuning.disabled_ublk_features = *engine::ParseUblkFeatures(options.disabled_ublk_features);
  manager.tuning.batch_io = options.batch_io;
  manager.reconnect = options.reconnect;
  d->volumes_ = std::make_unique<VolumeManager>(manager);
  d->service_ = std::make_unique<Service>(*d->volumes_, facts);
  builder.RegisterService(d->service_.get());
  // The record is read before the first request can change it.
  if (absl::Status s = d->volumes_->LoadRecords(); !s.ok()) {
    LOG(ERROR) << "serving without the recorded volumes: " << s;
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  // Only the owner (root) may drive the daemon: the socket is created 0600.
  const mode_t old_umask = umask(0177);
  d->server_ = builder.BuildAndStart();
  umask(old_umask);
  d->serving_socket_ = d->server_ != nullptr && !options.socket.empty();
  if (!d->server_ || (!options.listen.empty() && d->grpc_port_ == 0)) {
    return absl::UnavailableError(absl::StrCat(
        "cannot serve the API on ", absl::StrJoin(facts.listeners, " and "),
        ": is another ublkgwd running, the directory writable, the address local and free?"));
  }
  if (!options.listen.empty()) {
    // Name the port bound (a :0 asks for any free one).
    const std::string host = options.listen.substr(0, options.listen.rfind(':'));
    facts.listeners.back() = absl::StrCat(host, ":", d->grpc_port_, " (mutual TLS)");
    d->service_->SetListeners(facts.listeners);
  }
  if (!options.socket_group.empty()) {
    if (absl::Status s = ShareSocket(options.socket, options.socket_group); !s.ok()) return s;
  }
  if (!options.metrics_listen.empty()) {
    VolumeManager* volumes = d->volumes_.get();
    auto metrics = MetricsServer::Start(options.metrics_listen, [volumes] {
      return RenderMetrics(volumes->ListWithStats(), UBLKGW_VERSION);
    });
    if (!metrics.ok()) return metrics.status();
    d->metrics_ = *std::move(metrics);
  }
  for (const auto& l : facts.listeners) LOG(INFO) << "ublkgwd " << UBLKGW_VERSION << " serving on " << l;
  if (d->metrics_) {
    LOG(INFO) << "metrics on http://"
              << options.metrics_listen.substr(0, options.metrics_listen.rfind(':')) << ":"
              << d->metrics_->port() << "/metrics";
  }
  d->volumes_->StartRestorer();
  return d;
}

void Daemon::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (service_) service_->StopWatches();
  // Calls still running after the deadline (a watcher whose client
  // stopped reading) are cancelled, so a stop never hangs.
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  metrics_.reset();
  if (volumes_) volumes_->Shutdown(options_.keep_devices_on_stop ? OnStop::kKeep : OnStop::kDetach);
  if (serving_socket_) {  // never another daemon's
    std::error_code ec;
    std::filesystem::remove(options_.socket, ec);
  }
}

Daemon::~Daemon() { Stop(); }

}  // namespace ublkgw::control
