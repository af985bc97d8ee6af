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

}  // namespace

absl::StatusOr<FixedBufferSupport> ProbeFixedBuffers(int family) {
  auto ring = Ring::Create(8, 0);
  if (!ring.ok()) return ring.status();
  auto pair = ConnectedPair(family);
  if (!pair.ok()) return pair.status();
  const int ours = pair->first.get(), peer = pair->second.get();
  auto buffer = ProbeBuffer::Register(ring->get());
  if (!buffer.ok()) return buffer.status();
  ProbeBuffer& buf = **buffer;
  FixedBufferSupport s;

  // SEND from the registered pages.
  Fill(buf.data(), 1);
  buf.Protect(PROT_NONE);
  io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
  io_uring_prep_send(sqe, ours, buf.data(), kProbeBytes, MSG_NOSIGNAL);
  sqe->ioprio |= IORING_RECVSEND_FIXED_BUF;
  sqe->buf_index = 0;
  auto sent = Complete(*ring);
  if (!sent.ok()) return sent.status();
  s.send = sent->first == static_cast<int>(kProbeBytes) && ReceivedPattern(peer, 1);
  absl::StrAppend(&s.detail, "SEND with a fixed buffer: ", Answer(sent->first),
                  s.send ? ", data intact" : "", "\n");

  // SEND_ZC from the registered pages: the result, then the notification
  // that the pages are free again.
  buf.Protect(PROT_READ | PROT_WRITE);
  Fill(buf.data(), 2);
  buf.Protect(PROT_NONE);
  sqe = io_uring_get_sqe(ring->get());
  io_uring_prep_send_zc_fixed(sqe, ours, buf.data(), kProbeBytes, MSG_NOSIGNAL, 0, 0);
  auto zc = Complete(*ring);
  if (!zc.ok()) return zc.status();
  bool notified = (zc->second & IORING_CQE_F_MORE) == 0;  // no notification to wait for
  if (!notified) {
    auto notif = Complete(*ring);
    notified = notif.ok() && (notif->second & IORING_CQE_F_NOTIF) != 0;
  }
  s.send_zc = zc->first == static_cast<int>(kProbeBytes) && notified && ReceivedPattern(peer, 2);
  absl::StrAppend(&s.detail, "SEND_ZC with a fixed buffer: ", Answer(zc->first),
                  s.send_zc ? ", data intact, notified" : "", "\n");

  // WRITE_FIXED on the socket: a send through the file's write_iter.
  buf.Protect(PROT_READ | PROT_WRITE);
  Fill(buf.data(), 5);
  buf.Protect(PROT_NONE);
  sqe = io_uring_get_sqe(ring->get());
  io_uring_prep_write_fixed(sqe, ours, buf.data(), kProbeBytes, 0, 0);
  auto written = Complete(*ring);
  if (!written.ok()) return written.status();
  s.write_fixed = written->first == static_cast<int>(kProbeBytes) && ReceivedPattern(peer, 5);
  absl::StrAppend(&s.detail, "WRITE_FIXED to the socket: ", Answer(written->first),
                  s.write_fixed ? ", data intact" : "", "\n");

  // RECV into the registered pages (readable, not writable through the
  // user mapping).
  buf.Protect(PROT_READ | PROT_WRITE);
  std::memset(buf.data(), 0, kProbeBytes);
  buf.Protect(PROT_READ);
  uint8_t pattern[kProbeBytes];
  Fill(pattern, 3);
  if (send(peer, pattern, kProbeBytes, MSG_NOSIGNAL) != static_cast<ssize_t>(kProbeBytes)) {
    return ErrnoToStatus(errno, "probe send");
  }
  sqe = io_uring_get_sqe(ring->get());
  io_uring_prep_recv(sqe, ours, buf.data(), kProbeBytes, MSG_WAITALL);
  sqe->ioprio |= IORING_RECVSEND_FIXED_BUF;
  sqe->buf_index = 0;
  auto received = Complete(*ring);
  if (!received.ok()) return received.status();
  s.recv = received->first == static_cast<int>(kProbeBytes) && Matches(buf.data(), 3);
  absl::StrAppend(&s.detail, "RECV into a fixed buffer: ", Answer(received->first),
                  s.recv ? ", data intact" : "", "\n");
  if (received->first <= 0) {
    // The bytes are still queued: take them off before the next probe.
    buf.Protect(PROT_READ | PROT_WRITE);
    (void)ReceivedPattern(ours, 3);
  }

  // READ_FIXED on the socket: the same receive through the file's
  // read_iter, which fixed buffers reached long before RECV did.
  buf.Protect(PROT_READ | PROT_WRITE);
  std::memset(buf.data(), 0, kProbeBytes);
  buf.Protect(PROT_READ);
  Fill(pattern, 4);
  if (send(peer, pattern, kProbeBytes, MSG_NOSIGNAL) != static_cast<ssize_t>(kProbeBytes)) {
    return ErrnoToStatus(errno, "probe send");
  }
  size_t read_total = 0;
  int read_res = 0;
  while (read_total < kProbeBytes) {
    sqe = io_uring_get_sqe(ring->get());
    io_uring_prep_read_fixed(sqe, ours, buf.data() + read_total,
                             static_cast<unsigned>(kProbeBytes - read_total), 0, 0);
    auto r = Complete(*ring);
    if (!r.ok()) return r.status();
    read_res = r->first;
    if (read_res <= 0) break;
    read_total += static_cast<size_t>(read_res);
  }
  s.read_fixed = read_total == kProbeBytes && Matches(buf.data(), 4);
  absl::StrAppend(&s.detail, "READ_FIXED from the socket: ",
                  read_res > 0 ? absl::StrCat(read_total, " bytes") : Answer(read_res),
                  s.read_fixed ? ", data intact" : "", "\n");
  buf.Protect(PROT_READ | PROT_WRITE);
  io_uring_unregister_buffers(ring->get());
  return s;
}

}  // namespace ublkgw::engine
