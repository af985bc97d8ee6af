#ifndef UBLKGW_UBLK_CONTROL_DEVICE_H_
#define UBLKGW_UBLK_CONTROL_DEVICE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "ublk/command_ring.h"
#include "ublk/uapi.h"

namespace ublkgw::ublk {

inline constexpr char kControlDevicePath[] = "/dev/ublk-control";

// The ublk control device (/dev/ublk-control) and the io_uring that carries
// its commands (URING_CMD in 128-byte SQEs). Commands run one at a time and
// synchronously: control commands are rare, and some (DEL_DEV) block in the
// kernel until the device is gone. Every command is bounded by a timeout;
// one that outlives it is cancelled, and no call returns while the kernel
// may still write into memory it was given (ublk::CommandRing).
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

  // UBLK_U_CMD_ADD_DEV: creates /dev/ublkcN for `info` (dev_id ~0U lets the
  // kernel choose N). Returns the kernel's view of the new device.
  absl::StatusOr<ublksrv_ctrl_dev_info> AddDev(const ublksrv_ctrl_dev_info& info);
  // UBLK_U_CMD_SET_PARAMS, before START_DEV.
  absl::Status SetParams(uint32_t dev_id, const ublk_params& params);
  absl::StatusOr<ublk_params> GetParams(uint32_t dev_id);
  absl::StatusOr<ublksrv_ctrl_dev_info> GetDevInfo(uint32_t dev_id);
  // UBLK_U_CMD_START_DEV: creates /dev/ublkbN. Call it only once every
  // queue has its FETCH_REQs in flight: the kernel waits for them.
  absl::Status StartDev(uint32_t dev_id, int32_t server_pid);
  // UBLK_U_CMD_STOP_DEV: removes /dev/ublkbN; in-flight FETCH_REQs complete
  // with -ENODEV (UBLK_IO_RES_ABORT).
  absl::Status StopDev(uint32_t dev_id);
  // UBLK_U_CMD_DEL_DEV: removes /dev/ublkcN. Blocks until every fd of
  // /dev/ublkcN is closed: close the queues first.
  absl::Status DelDev(uint32_t dev_id);
  // UBLK_U_CMD_UPDATE_SIZE: the live device's new capacity, in 512-byte
  // sectors (needs kFUpdateSize; the kernel tells the block layer, which
  // sends a change uevent).
  absl::Status UpdateSize(uint32_t dev_id, uint64_t sectors);
  // UBLK_U_CMD_START_USER_RECOVERY: a device whose server went away
  // (kFUserRecovery, state kQuiesced) gets a new one: call it before
  // opening /dev/ublkcN again. -EBUSY (UNAVAILABLE here) while the old
  // server still holds /dev/ublkcN.
  absl::Status StartUserRecovery(uint32_t dev_id);
  // UBLK_U_CMD_END_USER_RECOVERY: the new server (`server_pid`, the process
  // that opened /dev/ublkcN) serves; requests held meanwhile are issued to
  // it. Blocks until every queue has its FETCH_REQs in: call it from
  // another thread than the queues'.
  absl::Status EndUserRecovery(uint32_t dev_id, int32_t server_pid);

  const std::string& path() const { return path_; }

 private:
  ControlDevice(std::string path, UniqueFd fd, CommandRing ring)
      : path_(std::move(path)), fd_(std::move(fd)), ring_(std::move(ring)) {}

  // Issues `cmd_op` with payload `cmd`, whose addr and len name `buffer`
  // (if not empty), and returns the CQE's result: >= 0 on success,
  // otherwise -errno from the kernel; `buffer` then holds what the kernel
  // wrote. Errors of the ring itself, and a command that does not complete
  // within the timeout, are returned as a Status naming the command.
  absl::StatusOr<int> Execute(uint32_t cmd_op, ublksrv_ctrl_cmd cmd, std::span<uint8_t> buffer,
                              absl::string_view name);
  // Execute for a command on `dev_id` with an optional buffer; turns a
  // negative result into a status naming the command and the device.
  absl::StatusOr<int> DevCommand(uint32_t cmd_op, absl::string_view name, uint32_t dev_id,
                                 void* buffer = nullptr, uint16_t len = 0, uint64_t data = 0);

  // Explains a failed command whose result was `neg_errno`.
  absl::Status CommandError(absl::string_view command, int neg_errno) const;

  std::string path_;
  UniqueFd fd_;  // declared before ring_: destroyed after it
  CommandRing ring_;
  // DEL_DEV and STOP_DEV wait for the kernel; a minute covers a busy host.
  absl::Duration timeout_ = absl::Seconds(60);
};

}  // namespace ublkgw::ublk

#endif  // UBLKGW_UBLK_CONTROL_DEVICE_H_
