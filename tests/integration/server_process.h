// Real NBD servers for integration tests: nbdkit, qemu-nbd and nbd-server,
// each started on loopback with an ephemeral port (or a unix socket) in its
// own process group, killed with the test process if it dies
// (PR_SET_PDEATHSIG) and always stopped and reaped by PID on destruction.
#ifndef UBLKGW_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define UBLKGW_TESTS_INTEGRATION_SERVER_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ublkgw::testing {

class ServerProcess {
 public:
  ServerProcess(ServerProcess&& other) noexcept;
  ServerProcess& operator=(ServerProcess&&) = delete;
  ~ServerProcess();

  // How to tell the server is ready.
  enum class Ready {
    kHandshake,  // `uri` completes an NBD handshake (and disconnects)
    kListening,  // the TCP port of `uri` is in LISTEN state; no connection
                 // is made (for servers that serve a single client, such
                 // as nbd-server -d)
  };

  // Starts `argv` (argv[0] found on PATH) and waits until it is ready, or
  // `timeout` passes. UNAVAILABLE with the server's log tail if it never
  // gets there; NOT_FOUND (tests skip on it) if the program is not
  // installed.
  static absl::StatusOr<ServerProcess> Start(std::vector<std::string> argv, std::string uri,
                                             Ready ready = Ready::kHandshake,
                                             absl::Duration timeout = absl::Seconds(20));

  const std::string& uri() const { return uri_; }
  pid_t pid() const { return pid_; }
  // Stops the server (SIGTERM, then SIGKILL after 5 s) and reaps it.
  void Stop();

 private:
  ServerProcess(pid_t pid, std::string uri, std::string log) : pid_(pid), uri_(uri), log_(log) {}
  pid_t pid_ = -1;
  std::string uri_;
  std::string log_;  // the server's stdout and stderr
};

// A TCP port on 127.0.0.1 that was free a moment ago.
absl::StatusOr<int> FreeLoopbackPort();

// A fresh directory under TMPDIR (or /tmp), or under `parent`; the
// caller removes it.
std::string MakeTempDir(const std::string& prefix);
std::string MakeTempDir(const std::string& parent, const std::string& prefix);

// Runs a command to completion (for qemu-img and the like); its output goes
// to the test log. OK if it exits 0.
absl::Status RunCommand(const std::vector<std::string>& argv);

}  // namespace ublkgw::testing

#endif  // UBLKGW_TESTS_INTEGRATION_SERVER_PROCESS_H_
