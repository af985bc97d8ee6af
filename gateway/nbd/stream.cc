#include "nbd/stream.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace ublkgw::nbd {

namespace {

int RemainingMs(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, INT32_MAX));
}

// Waits until `fd` is ready for `events` (OK), `deadline` passes
// (DEADLINE_EXCEEDED) or `cancel_fd` (-1: none) is readable (CANCELLED).
absl::Status WaitReady(int fd, short events, absl::Time deadline, int cancel_fd) {
  pollfd pfds[2] = {{fd, events, 0}, {cancel_fd, POLLIN, 0}};
  for (;;) {
    const int ret = ::poll(pfds, cancel_fd >= 0 ? 2 : 1, RemainingMs(deadline));
    if (ret < 0 && errno == EINTR) continue;
    if (ret < 0) return ErrnoToStatus(errno, "poll");
    if (ret == 0) return absl::DeadlineExceededError("timed out");
    if (cancel_fd >= 0 && pfds[1].revents != 0) return absl::CancelledError("stopped meanwhile");
    return absl::OkStatus();
  }
}

// Connects `fd` (non-blocking) to `addr`, waiting until `deadline`.
absl::Status ConnectWithDeadline(int fd, const sockaddr* addr, socklen_t len, absl::Time deadline,
                                 int cancel_fd, const std::string& what) {
  if (::connect(fd, addr, len) == 0) return absl::OkStatus();
  if (errno != EINPROGRESS) return ErrnoToStatus(errno, absl::StrCat("connect to ", what));
  if (absl::Status s = WaitReady(fd, POLLOUT, deadline, cancel_fd); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("connect to ", what, ": ", s.message()));
  }
  int err = 0;
  socklen_t err_len = sizeof(err);
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0) err = errno;
  return ErrnoToStatus(err, absl::StrCat("connect to ", what));
}

absl::StatusOr<UniqueFd> NewSocket(int family) {
  int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ErrnoToStatus(errno, "socket");
  return UniqueFd(fd);
}

absl::Status MakeBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
    return ErrnoToStatus(errno, "fcntl");
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> ConnectUnix(const std::string& path, absl::Time deadline,
                                     int cancel_fd) {
  if (path.empty()) return absl::InvalidArgumentError("empty unix socket path");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("unix socket path is ", path.size(),
                                                   " bytes; the limit is ",
                                                   sizeof(addr.sun_path) - 1));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  // An abstract socket's name is exactly its bytes; a path is NUL-terminated.
  const socklen_t len = offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '\0' ? 0 : 1);
  auto fd = NewSocket(AF_UNIX);
  if (!fd.ok()) return fd.status();
  // An abstract socket is shown as @NAME, as ss(8) does.
  const std::string shown =
      path[0] != '\0' ? path : absl::StrCat("@", absl::string_view(path).substr(1));
  absl::Status s = ConnectWithDeadline(fd->get(), reinterpret_cast<sockaddr*>(&addr), len, deadline,
                                       cancel_fd, absl::StrCat("unix socket ", shown));
  if (!s.ok()) {
    if (absl::IsNotFound(s) || absl::IsUnavailable(s)) {
      return absl::UnavailableError(absl::StrCat(s.message(), ": is the NBD server running?"));
    }
    return s;
  }
  return fd;
}

absl::StatusOr<UniqueFd> ConnectTcp(const Uri& uri, absl::Time deadline, int cancel_fd) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* result = nullptr;
  const std::string port = std::to_string(uri.port);
  int gai = ::getaddrinfo(uri.host.c_str(), port.c_str(), &hints, &result);
  if (gai == EAI_ADDRFAMILY || gai == EAI_NONAME) {
    // AI_ADDRCONFIG hides loopback-only families on hosts without another
    // address; try once more without it.
    hints.ai_flags = 0;
    gai = ::getaddrinfo(uri.host.c_str(), port.c_str(), &hints, &result);
  }
  if (gai != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve NBD server host '", uri.host, "': ", ::gai_strerror(gai)));
  }
  absl::Status last = absl::UnavailableError("no address");
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    auto fd = NewSocket(ai->ai_family);
    if (!fd.ok()) {
      last = fd.status();
      continue;
    }
    char host[NI_MAXHOST] = "?";
    ::getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host), nullptr, 0, NI_NUMERICHOST);
    const std::string what = ai->ai_family == AF_INET6 ? absl::StrCat("[", host, "]:", uri.port)
                                                       : absl::StrCat(host, ":", uri.port);
    last = ConnectWithDeadline(fd->get(), ai->ai_addr, ai->ai_addrlen, deadline, cancel_fd, what);
    if (absl::IsCancelled(last)) break;
    if (last.ok()) {
      ::freeaddrinfo(result);
      const int one = 1;
      ::setsockopt(fd->get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      return fd;
    }
  }
  ::freeaddrinfo(result);
  if (absl::IsUnavailable(last)) {
    return absl::UnavailableError(absl::StrCat(last.message(), ": is the NBD server running and reachable?"));
  }
  return last;
}

}  // namespace

absl::StatusOr<UniqueFd> Connect(const Uri& uri, absl::Duration timeout, int cancel_fd) {
  if (uri.tls) {
    return absl::UnimplementedError(absl::StrCat(
        "TLS (", uri.ToString(), ") is not supported yet: use nbd:// or nbd+unix://"));
  }
  const absl::Time deadline = absl::Now() + timeout;
  auto fd = uri.transport == Uri::Transport::kUnix
                ? ConnectUnix(uri.socket_path, deadline, cancel_fd)
                : ConnectTcp(uri, deadline, cancel_fd);
  if (!fd.ok()) return fd.status();
  if (absl::Status s = MakeBlocking(fd->get()); !s.ok()) return s;
  return fd;
}

void AckNow(int fd) {
  const int one = 1;
  // Fails harmlessly (EOPNOTSUPP) on a unix socket, which has no ACKs.
  ::setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

absl::Status Stream::Wait(short events) {
  absl::Status s = WaitReady(fd_.get(), events, absl::Now() + timeout_, cancel_fd_);
  if (absl::IsDeadlineExceeded(s)) {
    return absl::DeadlineExceededError(
        absl::StrCat("the NBD server sent nothing for ", absl::FormatDuration(timeout_)));
  }
  return s;
}

absl::Status Stream::ReadFull(std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    AckNow(fd_.get());
    if (absl::Status s = Wait(POLLIN); !s.ok()) return s;
    const ssize_t n = ::recv(fd_.get(), out.data() + done, out.size() - done, MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n == 0) {
      return absl::UnavailableError(absl::StrCat("the NBD server closed the connection (", done,
                                                 " of ", out.size(), " bytes read)"));
    } else if (errno != EINTR && errno != EAGAIN) {
      return ErrnoToStatus(errno, "recv from the NBD server");
    }
  }
  return absl::OkStatus();
}

absl::Status Stream::Skip(uint64_t n) {
  uint8_t scratch[4096];
  while (n > 0) {
    const size_t chunk = std::min<uint64_t>(n, sizeof(scratch));
    if (absl::Status s = ReadFull({scratch, chunk}); !s.ok()) return s;
    n -= chunk;
  }
  return absl::OkStatus();
}

absl::Status Stream::WriteFull(std::span<const uint8_t> in) {
  size_t done = 0;
  while (done < in.size()) {
    if (absl::Status s = Wait(POLLOUT); !s.ok()) return s;
    const ssize_t n = ::send(fd_.get(), in.data() + done, in.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      done += static_cast<size_t>(n);
    } else if (errno != EINTR && errno != EAGAIN) {
      return ErrnoToStatus(errno, "send to the NBD server");
    }
  }
  return absl::OkStatus();
}

}  // namespace ublkgw::nbd
