#include "engine/data_path_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "base/uring.h"
#include "ublk/uapi.h"

namespace ublkgw::engine {

namespace {

constexpr size_t kProbeBytes = 4096;
constexpr absl::Duration kProbeTimeout = absl::Seconds(2);

absl::StatusOr<std::pair<UniqueFd, UniqueFd>> ConnectedPair(int family) {
  if (family == AF_UNIX) {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      return ErrnoToStatus(errno, "socketpair");
    }
    return std::pair{UniqueFd(fds[0]), UniqueFd(fds[1])};
  }
  UniqueFd listener(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener.valid()) return ErrnoToStatus(errno, "probe socket");
  sockaddr_storage addr{};
  socklen_t len;
  if (family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*a);
  }
  if (bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      listen(listener.get(), 1) != 0 ||
      getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return ErrnoToStatus(errno, "probe listener on loopback");
  }
  UniqueFd client(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!client.valid() || connect(client.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    return ErrnoToStatus(errno, "probe connect on loopback");
  }
  UniqueFd server(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!server.valid()) return ErrnoToStatus(errno, "probe accept");
  const timeval timeout{2, 0};
  setsockopt(server.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  return std::pair{std::move(client), std::move(server)};
}

// A page-aligned buffer registered as fixed buffer 0 of `ring`.
class ProbeBuffer {
 public:
  static absl::StatusOr<std::unique_ptr<ProbeBuffer>> Register(io_uring* ring) {
    void* mem = mmap(nullptr, kProbeBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return ErrnoToStatus(errno, "probe buffer");
    std::unique_ptr<ProbeBuffer> b(new ProbeBuffer(static_cast<uint8_t*>(mem)));
    iovec iov{mem, kProbeBytes};
    if (int r = io_uring_register_buffers(ring, &iov, 1); r < 0) {
      return ErrnoToStatus(-r, "registering a fixed buffer");
    }
    return b;
  }
  ~ProbeBuffer() { munmap(data_, kProbeBytes); }
  uint8_t* data() { return data_; }
  // Only the registered pages stay usable: the user mapping is closed, so
  // an operation that fell back to it faults instead of passing.
  void Protect(int prot) { mprotect(data_, kProbeBytes, prot); }

 private:
  explicit ProbeBuffer(uint8_t* data) : data_(data) {}
  uint8_t* data_;
};

void Fill(uint8_t* p, uint8_t seed) {
  for (size_t i = 0; i < kProbeBytes; ++i) p[i] = static_cast<uint8_t>(seed + i * 7);
}

bool Matches(const uint8_t* p, uint8_t seed) {
  for (size_t i = 0; i < kProbeBytes; ++i) {
    if (p[i] != static_cast<uint8_t>(seed + i * 7)) return false;
  }
  return true;
}

// Reads exactly kProbeBytes from `fd` (plain syscalls) and checks them.
bool ReceivedPattern(int fd, uint8_t seed) {
  uint8_t got[kProbeBytes];
  size_t have = 0;
  while (have < kProbeBytes) {
    const ssize_t n = recv(fd, got + have, kProbeBytes - have, 0);
    if (n <= 0) return false;
    have += static_cast<size_t>(n);
  }
  return Matches(got, seed);
}

// Submits what is queued and returns the next completion's res and flags.
absl::StatusOr<std::pair<int, unsigned>> Complete(Ring& ring) {
  auto cqe = ring.SubmitAndWait(kProbeTimeout);
  if (!cqe.ok()) return cqe.status();
  const std::pair<int, unsigned> out{(*cqe)->res, (*cqe)->flags};
  io_uring_cqe_seen(ring.get(), *cqe);
  return out;
}

std::string Answer(int res) {
  return res >= 0 ? absl::StrCat(res, " bytes") : absl::StrCat(strerror(-res));
}

// Queues one operation on the probe's fixed buffer: `at` is where in the
// buffer, `len` how many bytes.
using PrepFn = void (*)(io_uring_sqe* sqe, int fd, uint8_t* at, unsigned len);

struct Probe {
  Ring& ring;
  ProbeBuffer& buf;
  int ours;
  int peer;
  std::string& detail;

  // Sends pattern `seed` from the registered pages (the user mapping
  // closed) with `prep`; waits for SEND_ZC's notification when one is
  // announced. True if all of it arrived intact.
  absl::StatusOr<bool> Send(const char* what, uint8_t seed, PrepFn prep) {
    buf.Protect(PROT_READ | PROT_WRITE);
    Fill(buf.data(), seed);
    buf.Protect(PROT_NONE);
    prep(io_uring_get_sqe(ring.get()), ours, buf.data(), kProbeBytes);
    auto sent = Complete(ring);
    if (!sent.ok()) return sent.status();
    const bool notifying = (sent->second & IORING_CQE_F_MORE) != 0;
    bool notified = !notifying;
    if (notifying) {
      auto notif = Complete(ring);
      notified = notif.ok() && (notif->second & IORING_CQE_F_NOTIF) != 0;
    }
    const bool ok =
        sent->first == static_cast<int>(kProbeBytes) && notified && ReceivedPattern(peer, seed);
    absl::StrAppend(&detail, what, ": ", Answer(sent->first), ok ? ", data intact" : "",
                    ok && notifying ? ", notified" : "", "\n");
    return ok;
  }

  // Receives pattern `seed`, sent by the peer, into the registered pages
  // (readable, not writable through the user mapping) with `prep`, as many
  // times as it takes. True if it all arrived intact.
  absl::StatusOr<bool> Receive(const char* what, uint8_t seed, PrepFn prep) {
    buf.Protect(PROT_READ | PROT_WRITE);
    std::memset(buf.data(), 0, kProbeBytes);
    buf.Protect(PROT_READ);
    uint8_t pattern[kProbeBytes];
    Fill(pattern, seed);
    if (send(peer, pattern, kProbeBytes, MSG_NOSIGNAL) != static_cast<ssize_t>(kProbeBytes)) {
      return ErrnoToStatus(errno, "probe send");
    }
    size_t total = 0;
    int res = 0;
    while (total < kProbeBytes) {
      prep(io_uring_get_sqe(ring.get()), ours, buf.data() + total,
           static_cast<unsigned>(kProbeBytes - total));
      auto r = Complete(ring);
      if (!r.ok()) return r.status();
      res = r->first;
      if (res <= 0) break;
      total += static_cast<size_t>(res);
    }
    buf.Protect(PROT_READ | PROT_WRITE);
    const bool ok = total == kProbeBytes && Matches(buf.data(), seed);
    absl::StrAppend(&detail, what, ": ", res > 0 ? absl::StrCat(total, " bytes") : Answer(res),
                    ok ? ", data intact" : "", "\n");
    // What the operation did not take is still queued: off with it before
    // the next trial.
    uint8_t rest[kProbeBytes];
    for (size_t left = kProbeBytes - total; left > 0;) {
      const ssize_t n = recv(ours, rest, left, 0);
      if (n <= 0) break;
      left -= static_cast<size_t>(n);
    }
    return ok;
  }
};

void SetFixed(io_uring_sqe* sqe) {
  sqe->ioprio |= IORING_RECVSEND_FIXED_BUF;
  sqe->buf_index = 0;
}

}  // namespace

absl::StatusOr<FixedBufferSupport> ProbeFixedBuffers(int family) {
  auto ring = Ring::Create(8, 0);
  if (!ring.ok()) return ring.status();
  auto pair = ConnectedPair(family);
  if (!pair.ok()) return pair.status();
  auto buffer = ProbeBuffer::Register(ring->get());
  if (!buffer.ok()) return buffer.status();
  FixedBufferSupport s;
  Probe probe{*ring, **buffer, pair->first.get(), pair->second.get(), s.detail};

  auto plain_send = probe.Send("SEND with a fixed buffer", 1, [](io_uring_sqe* sqe, int fd, uint8_t* at,
                                                          unsigned len) {
    io_uring_prep_send(sqe, fd, at, len, MSG_NOSIGNAL);
    SetFixed(sqe);
  });
  if (!plain_send.ok()) return plain_send.status();
  // SEND_ZC: the result, then the notification that the pages are free.
  auto send_zc = probe.Send("SEND_ZC with a fixed buffer", 2,
                            [](io_uring_sqe* sqe, int fd, uint8_t* at, unsigned len) {
                              io_uring_prep_send_zc_fixed(sqe, fd, at, len, MSG_NOSIGNAL, 0, 0);
                            });
  if (!send_zc.ok()) return send_zc.status();
  // WRITE_FIXED: a send through the socket file's write_iter.
  auto write_fixed = probe.Send("WRITE_FIXED to the socket", 5,
                                [](io_uring_sqe* sqe, int fd, uint8_t* at, unsigned len) {
                                  io_uring_prep_write_fixed(sqe, fd, at, len, 0, 0);
                                });
  if (!write_fixed.ok()) return write_fixed.status();
  auto plain_recv = probe.Receive("RECV into a fixed buffer", 3, [](io_uring_sqe* sqe, int fd,
                                                             uint8_t* at, unsigned len) {
    io_uring_prep_recv(sqe, fd, at, len, MSG_WAITALL);
    SetFixed(sqe);
  });
  if (!plain_recv.ok()) return plain_recv.status();
  // READ_FIXED: the same receive through the file's read_iter, which fixed
  // buffers reached long before RECV did.
  auto read_fixed = probe.Receive("READ_FIXED from the socket", 4,
                                  [](io_uring_sqe* sqe, int fd, uint8_t* at, unsigned len) {
                                    io_uring_prep_read_fixed(sqe, fd, at, len, 0, 0);
                                  });
  if (!read_fixed.ok()) return read_fixed.status();
  io_uring_unregister_buffers(ring->get());
  // The fused command (kernel/patches): io_uring's own list of what it
  // offers; what it does is ublk's to show (UBLK_F_FUSED_CMD).
  if (io_uring_probe* ops = io_uring_get_probe_ring(ring->get()); ops != nullptr) {
    s.fused_cmd = io_uring_opcode_supported(ops, ublk::kIoringOpFusedCmd) != 0;
    io_uring_free_probe(ops);
  }
  absl::StrAppend(&s.detail, "IORING_OP_FUSED_CMD (0x", absl::Hex(ublk::kIoringOpFusedCmd), "): ",
                  s.fused_cmd ? "offered" : "not offered", "\n");
  s.send = *plain_send;
  s.send_zc = *send_zc;
  s.write_fixed = *write_fixed;
  s.recv = *plain_recv;
  s.read_fixed = *read_fixed;
  return s;
}

}  // namespace ublkgw::engine
