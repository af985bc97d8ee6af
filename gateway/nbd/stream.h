// A connected stream socket used synchronously, every call bounded by a
// timeout: for the handshake and for the blocking client. (Queue workers
// take the socket over after the handshake and drive it from io_uring.)
#ifndef UBLKGW_NBD_STREAM_H_
#define UBLKGW_NBD_STREAM_H_

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "nbd/uri.h"

namespace ublkgw::nbd {

// Connects to the server `uri` names (TCP with TCP_NODELAY, or a unix
// socket, abstract when the path starts with NUL) within `timeout`.
// UNAVAILABLE naming the address when nothing answers; UNIMPLEMENTED for
// TLS URIs (nbds://), which are not supported yet. CANCELLED as soon as
// `cancel_fd` (an eventfd, say; -1: none) becomes readable.
absl::StatusOr<UniqueFd> Connect(const Uri& uri, absl::Duration timeout, int cancel_fd = -1);

// Acknowledges what `fd` (a TCP socket; anything else is left alone) has
// received now, not after the delayed-ACK timer. Call it when waiting for
// more of a reply: a server without TCP_NODELAY that wrote the reply in
// parts (qemu-nbd writes each option reply and structured chunk on its
// own) holds the next part under Nagle's algorithm until the last is
// acknowledged, and Linux delays that ACK by 40 ms or more while it
// expects to piggyback it on a request. TCP_QUICKACK lasts until the
// kernel next enters its delayed-ACK mode, so it is set at every wait.
void AckNow(int fd);

// Not thread-safe: one thread drives a Stream at a time.
class Stream {
 public:
  // Every wait ends with CANCELLED once `cancel_fd` (-1: none) is readable.
  Stream(UniqueFd fd, absl::Duration timeout, int cancel_fd = -1)
      : fd_(std::move(fd)), timeout_(timeout), cancel_fd_(cancel_fd) {}

  // Reads exactly out.size() bytes. UNAVAILABLE if the peer closes first,
  // DEADLINE_EXCEEDED if it stays silent for the timeout. Before it waits,
  // what has come is acknowledged (AckNow).
  absl::Status ReadFull(std::span<uint8_t> out);
  // Reads and discards `n` bytes.
  absl::Status Skip(uint64_t n);
  // Writes all of `in`.
  absl::Status WriteFull(std::span<const uint8_t> in);

  int fd() const { return fd_.get(); }
  // Hands the socket over (to a queue worker, say).
  UniqueFd Release() { return std::move(fd_); }

 private:
  // Waits until the socket is ready for `events`, the timeout passes or
  // the wait is cancelled.
  absl::Status Wait(short events);

  UniqueFd fd_;
  absl::Duration timeout_;
  int cancel_fd_;
};

}  // namespace ublkgw::nbd

#endif  // UBLKGW_NBD_STREAM_H_
