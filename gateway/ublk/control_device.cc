#include "ublk/control_device.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace ublkgw::ublk {

namespace {

constexpr int kNotSupp = 524;  // the kernel's ENOTSUPP, leaked by old drivers

// Why `path` could not be opened, with the fix, for the common ENOENT case.
absl::Status MissingDeviceError(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists("/sys/module/ublk_drv", ec)) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, " does not exist although the ublk_drv module is loaded: is devtmpfs "
              "mounted on /dev? (mount -t devtmpfs devtmpfs /dev)"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      path, " does not exist: the ublk driver is not loaded. Load it with "
            "'modprobe ublk_drv'; if that fails, this kernel was built without "
            "CONFIG_BLK_DEV_UBLK (Debian 12's 6.1 kernels lack it; Debian 13's 6.12 "
            "and newer have it)"));
}

// What the file at `path` is: the sysfs name of a character device
// ("ublk-control" for the real thing), "not a character device", or "" when
// sysfs cannot tell (not mounted).
std::string CharDeviceName(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "";
  if (!S_ISCHR(st.st_mode)) return "not a character device";
  std::error_code ec;
  auto target = std::filesystem::read_symlink(
      absl::StrCat("/sys/dev/char/", major(st.st_rdev), ":", minor(st.st_rdev)), ec);
  return ec ? "" : target.filename().string();
}

}  // namespace

absl::StatusOr<ControlDevice> ControlDevice::Open(const std::string& path) {
  auto fd = UniqueFd::Open(path, O_RDWR);
  if (!fd.ok()) {
    if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) return MissingDeviceError(path);
    if (absl::IsPermissionDenied(fd.status())) {
      return absl::PermissionDeniedError(absl::StrCat(
          fd.status().message(), ": managing ublk devices needs root (CAP_SYS_ADMIN)"));
    }
    return fd.status();
  }
  // Check what we opened before sending it commands: other drivers accept
  // URING_CMDs too (/dev/null answers every one with 0).
  const std::string name = CharDeviceName(path);
  if (!name.empty() && name != "ublk-control") {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is not the ublk control device (it is '", name, "'); use ", kControlDevicePath));
  }
  // Control commands ride in the second half of a 128-byte SQE.
  auto ring = CommandRing::Create(IORING_SETUP_SQE128);
  if (!ring.ok()) return ring.status();
  return ControlDevice(path, *std::move(fd), *std::move(ring));
}

absl::StatusOr<int> ControlDevice::Execute(uint32_t cmd_op, ublksrv_ctrl_cmd cmd,
                                           std::span<uint8_t> buffer, absl::string_view name) {
  const int fd = fd_.get();
  auto res = ring_.Run(
      [&](io_uring_sqe* sqe, void* memory) {
        // A 128-byte SQE: clear both halves, then fill the URING_CMD fields.
        std::memset(sqe, 0, 2 * sizeof(io_uring_sqe));
        sqe->opcode = IORING_OP_URING_CMD;
        sqe->fd = fd;
        sqe->cmd_op = cmd_op;
        cmd.addr = reinterpret_cast<uintptr_t>(memory);
        cmd.len = static_cast<uint16_t>(buffer.size());
        static_assert(sizeof(ublksrv_ctrl_cmd) <= 80, "must fit the SQE128 command area");
        std::memcpy(sqe->cmd, &cmd, sizeof(cmd));
      },
      buffer, timeout_);
  if (!res.ok()) {
    return absl::Status(res.status().code(), absl::StrCat(name, " on ", path_, ": ",
                                                          res.status().message()));
  }
  return res;
}

absl::Status ControlDevice::CommandError(absl::string_view command, int neg_errno) const {
  const int err = -neg_errno;
  if (err == EOPNOTSUPP || err == kNotSupp) {
    return absl::UnimplementedError(absl::StrCat(
        "the ublk driver does not know ", command,
        ": this kernel is too old (GET_FEATURES needs Linux 6.5 or newer; ublkgw is "
        "tested on 6.12 and 7.2)"));
  }
  return ErrnoToStatus(err, absl::StrCat(command, " on ", path_));
}

absl::StatusOr<int> ControlDevice::DevCommand(uint32_t cmd_op, absl::string_view name,
                                              uint32_t dev_id, void* buffer, uint16_t len,
                                              uint64_t data) {
  ublksrv_ctrl_cmd cmd{};
  cmd.dev_id = dev_id;
  cmd.queue_id = 0xffff;
  cmd.data[0] = data;
  auto res = Execute(cmd_op, cmd, {static_cast<uint8_t*>(buffer), len}, name);
  if (!res.ok()) return res.status();
  if (*res < 0) {
    return ErrnoToStatus(-*res, absl::StrCat(name, " for ublk device ", static_cast<int32_t>(dev_id)));
  }
  return *res;
}

absl::StatusOr<ublksrv_ctrl_dev_info> ControlDevice::AddDev(const ublksrv_ctrl_dev_info& info) {
  ublksrv_ctrl_dev_info out = info;
  auto res = DevCommand(kCmdAddDev, "UBLK_U_CMD_ADD_DEV", info.dev_id, &out, sizeof(out));
  if (!res.ok()) return res.status();
  return out;
}

absl::Status ControlDevice::SetParams(uint32_t dev_id, const ublk_params& params) {
  ublk_params copy = params;
  copy.len = sizeof(copy);
  return DevCommand(kCmdSetParams, "UBLK_U_CMD_SET_PARAMS", dev_id, &copy, sizeof(copy)).status();
}

absl::StatusOr<ublk_params> ControlDevice::GetParams(uint32_t dev_id) {
  ublk_params params{};
  params.len = sizeof(params);
  params.types = kParamTypeBasic | kParamTypeDiscard | kParamTypeDevt;
  auto res = DevCommand(kCmdGetParams, "UBLK_U_CMD_GET_PARAMS", dev_id, &params, sizeof(params));
  if (!res.ok()) return res.status();
  return params;
}

absl::StatusOr<ublksrv_ctrl_dev_info> ControlDevice::GetDevInfo(uint32_t dev_id) {
  ublksrv_ctrl_dev_info info{};
  auto res = DevCommand(kCmdGetDevInfo, "UBLK_U_CMD_GET_DEV_INFO", dev_id, &info, sizeof(info));
  if (!res.ok()) return res.status();
  return info;
}

absl::Status ControlDevice::StartDev(uint32_t dev_id, int32_t server_pid) {
  return DevCommand(kCmdStartDev, "UBLK_U_CMD_START_DEV", dev_id, nullptr, 0,
                    static_cast<uint64_t>(server_pid))
      .status();
}

absl::Status ControlDevice::StopDev(uint32_t dev_id) {
  return DevCommand(kCmdStopDev, "UBLK_U_CMD_STOP_DEV", dev_id).status();
}

absl::Status ControlDevice::DelDev(uint32_t dev_id) {
  return DevCommand(kCmdDelDev, "UBLK_U_CMD_DEL_DEV", dev_id).status();
}

absl::Status ControlDevice::UpdateSize(uint32_t dev_id, uint64_t sectors) {
  return DevCommand(kCmdUpdateSize, "UBLK_U_CMD_UPDATE_SIZE", dev_id, nullptr, 0, sectors).status();
}

absl::Status ControlDevice::StartUserRecovery(uint32_t dev_id) {
  auto res = DevCommand(kCmdStartUserRecovery, "UBLK_U_CMD_START_USER_RECOVERY", dev_id);
  if (absl::IsUnavailable(res.status())) {  // EBUSY
    return absl::UnavailableError(absl::StrCat(
        "/dev/ublkc", dev_id, " is still held by its previous server (", res.status().message(),
        "); retrying once it lets go"));
  }
  return res.status();
}

absl::Status ControlDevice::EndUserRecovery(uint32_t dev_id, int32_t server_pid) {
  return DevCommand(kCmdEndUserRecovery, "UBLK_U_CMD_END_USER_RECOVERY", dev_id, nullptr, 0,
                    static_cast<uint64_t>(server_pid))
      .status();
}

absl::StatusOr<uint64_t> ControlDevice::GetFeatures() {
  uint64_t features = 0;
  ublksrv_ctrl_cmd cmd{};
  cmd.dev_id = ~0U;
  cmd.queue_id = 0xffff;
  auto res = Execute(kCmdGetFeatures, cmd,
                     {reinterpret_cast<uint8_t*>(&features), sizeof(features)},
                     "UBLK_U_CMD_GET_FEATURES");
  if (!res.ok()) return res.status();
  if (*res < 0) return CommandError("UBLK_U_CMD_GET_FEATURES", *res);
  return features;
}

}  // namespace ublkgw::ublk
