// An NBD server on a unix socket, for host tests that reach a server by
// URI: each connection gets a whole handshake for a 1 MiB export (with the
// given flags), or, when
// `silent`, nothing at all (a server that accepts and never answers).
// Connections stay open until HangUp or the destructor.
#ifndef UBLKGW_TESTS_UNIT_CONTROL_FAKE_NBD_LISTENER_H_
#define UBLKGW_TESTS_UNIT_CONTROL_FAKE_NBD_LISTENER_H_

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "nbd/fake_server.h"
#include "nbd/wire.h"

namespace ublkgw::control::testing {

class FakeNbdListener {
 public:
  // `flags`: the export's transmission flags, as each connection is told.
  FakeNbdListener(std::string path, bool silent, uint16_t flags = nbd::kFlagHasFlags)
      : path_(std::move(path)), silent_(silent), flags_(flags) {
    listen_.Reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    stop_.Reset(::eventfd(0, EFD_CLOEXEC));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    ::unlink(path_.c_str());
    ok_ = listen_.get() >= 0 && stop_.get() >= 0 && path_.size() < sizeof(addr.sun_path) &&
          ::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
          ::listen(listen_.get(), 16) == 0;
    if (ok_) thread_ = std::thread([this] { Serve(); });
  }
  ~FakeNbdListener() {
    const uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
    if (thread_.joinable()) thread_.join();
    HangUp();
  }

  bool ok() const { return ok_; }
  std::string Uri(const std::string& export_name) const {
    return "nbd+unix:///" + export_name + "?socket=" + path_;
  }
  // Waits, until `deadline`, for `n` connections to have been accepted.
  bool AwaitConnections(int n, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto accepted = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return static_cast<int>(accepted_.size()) >= n;
    };
    return mu_.AwaitWithDeadline(absl::Condition(&accepted), deadline);
  }
  // Closes every connection: a client in its handshake sees the end at once.
  void HangUp() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    for (const UniqueFd& fd : accepted_) ::shutdown(fd.get(), SHUT_RDWR);
  }

 private:
  void Serve() {
    pollfd fds[2] = {{listen_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    while (::poll(fds, 2, -1) >= 0 && (fds[1].revents & POLLIN) == 0) {
      if ((fds[0].revents & POLLIN) == 0) continue;
      UniqueFd conn(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (conn.get() < 0) continue;
      if (!silent_) {
        // A client that stops mid-handshake does not hold this thread up.
        const timeval limit{5, 0};
        ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
        nbd::testing::FakePeer(conn.get()).AcceptGo(1 << 20, flags_);
      }
      absl::MutexLock lock(&mu_);
      accepted_.push_back(std::move(conn));
    }
  }

  const std::string path_;
  const bool silent_;
  const uint16_t flags_;
  bool ok_ = false;
  UniqueFd listen_;
  UniqueFd stop_;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<UniqueFd> accepted_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ublkgw::control::testing

#endif  // UBLKGW_TESTS_UNIT_CONTROL_FAKE_NBD_LISTENER_H_
