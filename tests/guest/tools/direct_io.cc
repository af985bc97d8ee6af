// direct_io read|write DEVICE OFFSET LENGTH: one O_DIRECT pread or pwrite
// of LENGTH bytes at OFFSET (a write's bytes are 0x5a). Prints "ok" and
// exits 0, or prints the errno's name (ENOMEM, EIO, ...) and exits 1: what
// an application sees, with no retry (dd retries a failed direct read
// through the page cache, which turns every error into EIO).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
  if (argc != 5 || (std::string(argv[1]) != "read" && std::string(argv[1]) != "write")) {
    std::fprintf(stderr, "usage: direct_io read|write DEVICE OFFSET LENGTH\n");
    return 2;
  }
  const bool write = std::string(argv[1]) == "write";
  const off_t offset = std::strtoll(argv[3], nullptr, 0);
  const size_t length = std::strtoull(argv[4], nullptr, 0);
  const int fd = open(argv[2], (write ? O_WRONLY : O_RDONLY) | O_DIRECT);
  if (fd < 0) {
    std::printf("open: %s\n", strerrorname_np(errno));
    return 1;
  }
  void* buf = nullptr;
  if (posix_memalign(&buf, 4096, length) != 0) return 2;
  std::memset(buf, 0x5a, length);
  const ssize_t n = write ? pwrite(fd, buf, length, offset) : pread(fd, buf, length, offset);
  const int err = errno;
  std::free(buf);
  close(fd);
  errno = err;
  if (n < 0) {
    std::printf("%s\n", strerrorname_np(errno));
    return 1;
  }
  std::printf(n == static_cast<ssize_t>(length) ? "ok\n" : "short: %zd\n", n);
  return n == static_cast<ssize_t>(length) ? 0 : 1;
}
