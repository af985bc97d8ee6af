#include "server_process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nbd/blocking_client.h"

namespace ublkgw::testing {

namespace {

// Exits the child on exec failure with a code the parent recognises.
constexpr int kExecFailed = 127;

std::string ReadTail(const std::string& path, size_t max = 2000) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > max ? s.substr(s.size() - max) : s;
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid != 0) return pid;
  // Child: own process group, dies with the test, output to the log.
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(kExecFailed);
  const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log >= 0) {
    dup2(log, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
  }
  const int null = open("/dev/null", O_RDONLY);
  if (null >= 0) dup2(null, STDIN_FILENO);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  _exit(kExecFailed);
}

// Whether something listens on TCP `port` (IPv4 or IPv6), from /proc.
bool IsListening(int port) {
  char want[8];
  snprintf(want, sizeof(want), ":%04X", port);
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state;
      fields >> slot >> local >> remote >> state;
      if (state == "0A" && local.size() > 5 && local.ends_with(want)) return true;
    }
  }
  return false;
}

bool ProgramExists(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (access((dir + "/" + name).c_str(), X_OK) == 0) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<int> FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return absl::InternalError("bind/getsockname");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

std::string MakeTempDir(const std::string& parent, const std::string& prefix) {
  std::string templ = absl::StrCat(parent, "/", prefix, ".XXXXXX");
  if (mkdtemp(templ.data()) == nullptr) return "";
  return templ;
}

std::string MakeTempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  return MakeTempDir(tmp ? tmp : "/tmp", prefix);
}

absl::Status RunCommand(const std::vector<std::string>& argv) {
  const std::string log = absl::StrCat(MakeTempDir("ublkgw-cmd"), "/out");
  const pid_t pid = Spawn(argv, log);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "), " failed: ", ReadTail(log)));
}

absl::StatusOr<ServerProcess> ServerProcess::Start(std::vector<std::string> argv, std::string uri,
                                                   Ready ready, absl::Duration timeout) {
  if (!ProgramExists(argv[0])) {
    return absl::NotFoundError(absl::StrCat(argv[0], " is not installed (scripts/install-deps.sh)"));
  }
  const std::string log = absl::StrCat(MakeTempDir("ublkgw-server"), "/server.log");
  std::cerr << "[server] " << absl::StrJoin(argv, " ") << " (log " << log << ")\n";
  ServerProcess server(Spawn(argv, log), uri, log);

  auto parsed = nbd::ParseUri(uri);
  if (!parsed.ok()) return parsed.status();
  nbd::ClientOptions options;
  options.timeout = absl::Seconds(2);
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last;
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(server.pid_, &status, WNOHANG) == server.pid_) {
      server.pid_ = -1;
      return absl::UnavailableError(absl::StrCat(argv[0], " exited at start: ", ReadTail(log)));
    }
    if (ready == Ready::kListening) {
      if (IsListening(parsed->port)) return server;
      last = absl::UnavailableError("not listening yet");
    } else {
      auto client = nbd::BlockingClient::Connect(*parsed, options);
      if (client.ok()) {
        (void)client->Disconnect();
        return server;
      }
      last = client.status();
    }
    usleep(20 * 1000);
  }
  return absl::UnavailableError(absl::StrCat(argv[0], " did not serve ", uri, " within ",
                                             absl::FormatDuration(timeout), " (", last.message(),
                                             "): ", ReadTail(log)));
}

ServerProcess::ServerProcess(ServerProcess&& other) noexcept
    : pid_(other.pid_), uri_(std::move(other.uri_)), log_(std::move(other.log_)) {
  other.pid_ = -1;
}

ServerProcess::~ServerProcess() { Stop(); }

void ServerProcess::Stop() {
  if (pid_ <= 0) return;
  // The group, and the pid itself in case the child had not yet made it.
  kill(-pid_, SIGTERM);
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (absl::Now() > deadline) {
      kill(-pid_, SIGKILL);
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    usleep(10 * 1000);
  }
  pid_ = -1;
}

}  // namespace ublkgw::testing
