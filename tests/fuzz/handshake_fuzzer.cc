// libFuzzer harness for the NBD handshake: the input (after one byte of
// options) is everything the server says; the client negotiates or lists
// exports over a socketpair. Every outcome must be a status, never a crash,
// a hang or an out-of-bounds access.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>

#include "base/unique_fd.h"
#include "nbd/handshake.h"
#include "nbd/stream.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 60000) return 0;  // must fit the socket buffer
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return 0;
  ublkgw::UniqueFd server(fds[1]);
  // Let the client's own writes never block: a big buffer on its side.
  const int big = 1 << 20;
  setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
  size_t done = 1;
  while (done < size) {
    const ssize_t n = write(fds[1], data + done, size - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  shutdown(fds[1], SHUT_WR);  // then EOF: the client cannot wait forever

  ublkgw::nbd::Stream stream(ublkgw::UniqueFd(fds[0]), absl::Milliseconds(200));
  const uint8_t options = data[0];
  if (options & 1) {
    (void)ublkgw::nbd::ListExports(stream);
  } else {
    ublkgw::nbd::HandshakeOptions handshake;
    handshake.export_name = options & 2 ? "disk" : "";
    handshake.structured_replies = options & 4;
    handshake.extended_headers = options & 8;
    (void)ublkgw::nbd::Negotiate(stream, handshake);
  }
  return 0;
}
