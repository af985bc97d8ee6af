#ifndef UBLKGW_BASE_UNIQUE_FD_H_
#define UBLKGW_BASE_UNIQUE_FD_H_

#include <string>

#include "absl/status/statusor.h"

namespace ublkgw {

// Owns one file descriptor and closes it on destruction. Move-only.
// Not thread-safe: like the fd itself, it belongs to whoever holds it.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }

  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  // Opens `path` with `flags` (O_CLOEXEC is always added). The error names
  // the path and carries the errno's code (NOT_FOUND, PERMISSION_DENIED...).
  static absl::StatusOr<UniqueFd> Open(const std::string& path, int flags);

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

  // Gives up ownership without closing.
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // Closes the current fd (if any) and takes `fd`.
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

}  // namespace ublkgw

#endif  // UBLKGW_BASE_UNIQUE_FD_H_
