#ifndef UBLKGW_UBLK_CONTROL_DEVICE_H_
#define UBLKGW_UBLK_CONTROL_DEVICE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "base/uring.h"
#include "ublk/uapi.h"

namespace ublkgw::ublk {

inline constexpr char kControlDevicePath[] = "/dev/ublk-control";

// The ublk control device (/dev/ublk-control) and the io_uring that carries
// its commands (URING_CMD in 128-byte SQEs). Commands run one at a time and
// synchronously: control commands are rare, and some (DEL_DEV) block in the
// kernel until the device is gone.
//
// Threads: not thread-safe; the owner serialises calls (the daemon keeps one
// per process behind its control-plane mutex).
// Teardown: the ring is torn down before the fd is closed.
class ControlDevice {
 public:
  // Opens `path`. When it is missing, the error says why and what to do:
  // FAILED_PRECONDITION naming the ublk_drv module or devtmpfs.
  // INVALID_ARGUMENT when `path` is some other file or device.
  static absl::StatusOr<ControlDevice> Open(const std::string& path = kControlDevicePath);

  // UBLK_U_CMD_GET_FEATURES: the kF* flags the running driver supports.
  // UNIMPLEMENTED when the driver predates the command (Linux < 6.5).
  absl::StatusOr<uint64_t> GetFeatures();

  const std::string& path() const { return path_; }

 private:
  ControlDevice(std::string path, UniqueFd fd, Ring ring)
      : path_(std::move(path)), fd_(std::move(fd)), ring_(std::move(ring)) {}

  // Issues `cmd_op` with payload `cmd` and returns the CQE's result: >= 0 on
  // success, otherwise -errno from the kernel. Errors of the ring itself are
  // returned as a Status.
  absl::StatusOr<int> Execute(uint32_t cmd_op, const ublksrv_ctrl_cmd& cmd);

  // Explains a failed command whose result was `neg_errno`.
  absl::Status CommandError(absl::string_view command, int neg_errno) const;

  std::string path_;
  UniqueFd fd_;  // declared before ring_: destroyed after it
  Ring ring_;
  absl::Duration timeout_ = absl::Seconds(30);
};

}  // namespace ublkgw::ublk

#endif  // UBLKGW_UBLK_CONTROL_DEVICE_H_
