#include "engine/data_path.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "base/status.h"
#include "glog/logging.h"
#include "ublk/uapi.h"

namespace ublkgw::engine {

namespace {

const char* Name(WriteOp op) {
  switch (op) {
    case WriteOp::kSend:
      return "SEND";
    case WriteOp::kSendZc:
      return "SEND_ZC";
    case WriteOp::kWriteFixed:
      return "WRITE_FIXED";
  }
  return "?";
}

const char* Name(ReadOp op) { return op == ReadOp::kRecv ? "RECV" : "READ_FIXED"; }

std::string Size(uint32_t bytes) {
  return bytes % 1024 == 0 ? absl::StrCat(bytes / 1024, " KiB") : absl::StrCat(bytes, " bytes");
}

}  // namespace

absl::StatusOr<DataPathPlan> ChooseDataPath(DataPathMode mode, uint64_t ublk_features,
                                            const FixedBufferSupport& probe,
                                            std::optional<uint32_t> send_zc_min_bytes,
                                            bool local_peer) {
  DataPathPlan plan;
  if (mode == DataPathMode::kCopy) {
    plan.detail = "copy (asked for)";
    return plan;
  }
  // Both zero-copy paths need a socket op each way on fixed buffers.
  std::vector<std::string> socket_missing;
  if (!probe.send && !probe.send_zc && !probe.write_fixed) {
    socket_missing.push_back("no socket operation sends from a fixed buffer (SEND, SEND_ZC and "
                             "WRITE_FIXED all failed the probe)");
  }
  if (!probe.recv && !probe.read_fixed) {
    socket_missing.push_back("no socket operation receives into a fixed buffer (RECV and "
                             "READ_FIXED both failed the probe)");
  }
  // The fused path: besides, the driver's command and io_uring's opcode,
  // both probed (GET_FEATURES, io_uring's opcode list).
  std::vector<std::string> fused_missing;
  if ((ublk_features & ublk::kFFusedCmd) == 0 || (ublk_features & ublk::kFSupportZeroCopy) == 0) {
    fused_missing.push_back(
        "the ublk driver offers no fused command (UBLK_F_FUSED_CMD; or "
        "--disable-ublk-features rules it out)");
  }
  if (!probe.fused_cmd) fused_missing.push_back("io_uring has no IORING_OP_FUSED_CMD");
  const bool kernel_lacks = !fused_missing.empty();  // else only socket ops are missing
  fused_missing.insert(fused_missing.end(), socket_missing.begin(), socket_missing.end());
  const bool fused = fused_missing.empty() && mode != DataPathMode::kZeroCopy;
  if (mode == DataPathMode::kFused && !fused) {
    return WithRemedy(
        absl::FailedPreconditionError(absl::StrCat(
            "the fused data path is not possible on this kernel: ",
            absl::StrJoin(fused_missing, "; "),
            kernel_lacks ? " (it needs a kernel carrying ublkgw's IORING_OP_FUSED_CMD series, "
                           "kernel/)"
                         : "")),
        kernel_lacks ? Remedy::kUseZeroCopyDataPath : Remedy::kAllowSocketOps);
  }
  std::vector<std::string> missing;
  const bool auto_reg = (ublk_features & ublk::kFAutoBufReg) != 0 && !fused;
  if (!auto_reg && (ublk_features & ublk::kFSupportZeroCopy) == 0) {
    missing.push_back("the ublk driver cannot put request buffers in io_uring "
                      "(UBLK_F_AUTO_BUF_REG, Linux 6.16, or UBLK_F_SUPPORT_ZERO_COPY, 6.15)");
  }
  missing.insert(missing.end(), socket_missing.begin(), socket_missing.end());
  if (!missing.empty()) {
    const std::string why = absl::StrJoin(missing, "; ");
    if (mode == DataPathMode::kZeroCopy) {
      return WithRemedy(absl::FailedPreconditionError(absl::StrCat(
                            "the zero-copy data path is not possible on this kernel: ", why)),
                        Remedy::kUseCopyDataPath);
    }
    plan.detail = absl::StrCat("copy: zero copy is not possible (", why, ")");
    return plan;
  }
  plan.zero_copy = true;
  plan.registration = fused      ? BufferRegistration::kFused
                      : auto_reg ? BufferRegistration::kAuto
                                 : BufferRegistration::kExplicit;
  plan.small_write = probe.send          ? WriteOp::kSend
                     : probe.write_fixed ? WriteOp::kWriteFixed
                                         : WriteOp::kSendZc;
  const bool zc_only = !probe.send && !probe.write_fixed;
  const bool skip_zc = !send_zc_min_bytes.has_value() && !zc_only;
  const uint32_t threshold = send_zc_min_bytes.value_or(kDefaultSendZcMinBytes);
  plan.large_write = probe.send_zc && !skip_zc ? WriteOp::kSendZc : plan.small_write;
  plan.send_zc_min_bytes = plan.large_write == plan.small_write ? 0 : threshold;
  plan.read = probe.recv ? ReadOp::kRecv : ReadOp::kReadFixed;
  std::string writes = Name(plan.small_write);
  if (plan.large_write != plan.small_write) {
    writes = threshold == 0 ? Name(plan.large_write)
                            : absl::StrCat(Name(plan.small_write), " below ", Size(threshold),
                                           ", ", Name(plan.large_write), " from it");
  }
  plan.detail = absl::StrCat(
      fused ? "fused" : "zero copy", ": writes sent with ", writes, ", reads received with ",
      Name(plan.read), ", straight from and into the request's pages, ",
      fused      ? "lent to each of them by IORING_OP_FUSED_CMD"
      : auto_reg ? "registered by the driver"
                 : "registered with REGISTER_IO_BUF per request");
  if (skip_zc && probe.send_zc) {
    if (local_peer) {
      absl::StrAppend(&plan.detail,
                      " (no SEND_ZC: the server is on this host, where it would copy anyway)");
    } else {
      absl::StrAppend(&plan.detail, " (no SEND_ZC unless asked)");
      plan.remedy = Remedy::kEnableSendZc;
    }
  }
  return plan;
}

absl::StatusOr<FixedBufferSupport> CachedProbe(int family) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* results = new std::map<int, FixedBufferSupport>;
  absl::MutexLock lock(&mu);
  if (auto it = results->find(family); it != results->end()) return it->second;
  auto probe = ProbeFixedBuffers(family);
  if (!probe.ok()) return probe.status();
  LOG(INFO) << "fixed-buffer socket operations on this kernel (family " << family << "):\n"
            << probe->detail;
  (*results)[family] = *probe;
  return *probe;
}

absl::StatusOr<int> SocketFamily(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return ErrnoToStatus(errno, "getsockname");
  }
  return static_cast<int>(addr.ss_family);
}

bool PeerIsLocal(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return false;
  switch (addr.ss_family) {
    case AF_UNIX:
      return true;
    case AF_INET: {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
      return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    case AF_INET6: {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
      if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) return true;
      return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127;
    }
  }
  return false;
}

absl::StatusOr<FixedBufferSupport> ParseSocketOps(std::string_view list) {
  FixedBufferSupport ops;
  for (absl::string_view name : absl::StrSplit(absl::string_view(list.data(), list.size()), ',',
                                               absl::SkipEmpty())) {
    if (name == "send") {
      ops.send = true;
    } else if (name == "send-zc") {
      ops.send_zc = true;
    } else if (name == "recv") {
      ops.recv = true;
    } else if (name == "write-fixed") {
      ops.write_fixed = true;
    } else if (name == "read-fixed") {
      ops.read_fixed = true;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown socket operation '", std::string(name),
                       "': use send, send-zc, recv, write-fixed or read-fixed"));
    }
  }
  return ops;
}

FixedBufferSupport WithoutOps(FixedBufferSupport probe, const FixedBufferSupport& disabled) {
  probe.send = probe.send && !disabled.send;
  probe.send_zc = probe.send_zc && !disabled.send_zc;
  probe.recv = probe.recv && !disabled.recv;
  probe.write_fixed = probe.write_fixed && !disabled.write_fixed;
  probe.read_fixed = probe.read_fixed && !disabled.read_fixed;
  probe.fused_cmd = probe.fused_cmd && !disabled.fused_cmd;
  return probe;
}

absl::StatusOr<uint64_t> ParseUblkFeatures(std::string_view list) {
  uint64_t mask = 0;
  for (absl::string_view name : absl::StrSplit(absl::string_view(list.data(), list.size()), ',',
                                               absl::SkipEmpty())) {
    if (name == "batch-io" || name == "UBLK_F_BATCH_IO") {
      mask |= ublk::kFBatchIo;
    } else if (name == "auto-buf-reg" || name == "UBLK_F_AUTO_BUF_REG") {
      mask |= ublk::kFAutoBufReg;
    } else if (name == "zero-copy" || name == "UBLK_F_SUPPORT_ZERO_COPY") {
      mask |= ublk::kFSupportZeroCopy;
    } else if (name == "user-recovery" || name == "UBLK_F_USER_RECOVERY") {
      mask |= ublk::kFUserRecovery | ublk::kFUserRecoveryReissue;
    } else if (name == "fused" || name == "UBLK_F_FUSED_CMD") {
      mask |= ublk::kFFusedCmd;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown or unsupported ublk feature '", std::string(name),
          "': those that can be ruled out are batch-io (UBLK_F_BATCH_IO), auto-buf-reg "
          "(UBLK_F_AUTO_BUF_REG), zero-copy "
          "(UBLK_F_SUPPORT_ZERO_COPY), user-recovery (UBLK_F_USER_RECOVERY) and fused "
          "(UBLK_F_FUSED_CMD)"));
    }
  }
  return mask;
}

namespace {

// Batched ublk commands where the driver offers them: on the copy path and
// on zero copy registered by the driver. Not with REGISTER_IO_BUF, whose
// UNREGISTER must reach the kernel before the tag's own commit, nor fused,
// whose masters are per-tag commands.
bool CanBatch(const DataPathPlan& plan) {
  return !plan.zero_copy || plan.registration == BufferRegistration::kAuto;
}

void Batch(DataPathPlan& plan) {
  plan.batch = true;
  absl::StrAppend(&plan.detail, "; ublk commands in batches (UBLK_F_BATCH_IO)");
}

}  // namespace

absl::StatusOr<DataPathPlan> PlanDataPath(DataPathMode mode, uint64_t have,
                                          const DataPathTuning& tuning, int socket) {
  absl::StatusOr<DataPathPlan> plan;
  if (mode == DataPathMode::kCopy) {
    plan = ChooseDataPath(DataPathMode::kCopy, 0, {});
  } else {
    auto family = SocketFamily(socket);
    if (!family.ok()) return family.status();
    auto probe = CachedProbe(*family);
    if (!probe.ok()) {
      LOG(WARNING) << "the fixed-buffer probe could not run: " << probe.status();
      probe = FixedBufferSupport{};  // nothing proven: zero copy is off
    }
    plan = ChooseDataPath(mode, have, WithoutOps(*probe, tuning.disabled_ops),
                          tuning.send_zc_min_bytes, PeerIsLocal(socket));
  }
  if (plan.ok() && tuning.batch_io && (have & ublk::kFBatchIo) != 0 && CanBatch(*plan)) {
    Batch(*plan);
  }
  return plan;
}

uint64_t DeviceFlags(const DataPathPlan& plan) {
  const uint64_t batch = plan.batch ? ublk::kFBatchIo : 0;
  if (!plan.zero_copy) return batch;
  switch (plan.registration) {
    case BufferRegistration::kAuto:
      return batch | ublk::kFAutoBufReg;
    case BufferRegistration::kExplicit:
      return batch | ublk::kFSupportZeroCopy;
    case BufferRegistration::kFused:
      return batch | ublk::kFSupportZeroCopy | ublk::kFFusedCmd;
  }
  return batch;
}

absl::StatusOr<DataPathPlan> PlanForDevice(uint64_t features, const DataPathTuning& tuning,
                                           uint64_t device_flags, int socket) {
  constexpr uint64_t kZeroCopyFlags =
      ublk::kFAutoBufReg | ublk::kFSupportZeroCopy | ublk::kFFusedCmd;
  const uint64_t has = device_flags & kZeroCopyFlags;
  absl::StatusOr<DataPathPlan> plan;
  if (has == 0) {
    plan = ChooseDataPath(DataPathMode::kCopy, 0, {});
  } else {
    uint64_t offer = features & ~ublk::kFBatchIo;  // the device's flags decide
    if ((has & ublk::kFAutoBufReg) == 0) offer &= ~ublk::kFAutoBufReg;
    DataPathTuning device_tuning = tuning;
    device_tuning.disabled_ublk_features = 0;  // the device's flags decide
    device_tuning.disabled_ops.fused_cmd = false;
    const DataPathMode mode =
        (has & ublk::kFFusedCmd) != 0 ? DataPathMode::kFused : DataPathMode::kZeroCopy;
    plan = PlanDataPath(mode, offer, device_tuning, socket);
    if (!plan.ok() || DeviceFlags(*plan) != has) {
      return WithRemedy(absl::FailedPreconditionError(absl::StrCat(
                            "the device was made for zero copy (flags 0x", absl::Hex(has),
                            ") and this daemon cannot serve it that way",
                            plan.ok() ? "" : absl::StrCat(": ", plan.status().message()))),
                        Remedy::kAllowSocketOps);
    }
  }
  // A device made with UBLK_F_BATCH_IO takes only batched commands, and
  // one made without it only per-tag ones.
  if ((device_flags & ublk::kFBatchIo) != 0) {
    if (!CanBatch(*plan)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the device takes only batched ublk commands (UBLK_F_BATCH_IO), which its data path (",
          plan->detail, ") cannot use"));
    }
    Batch(*plan);
  }
  return plan;
}

}  // namespace ublkgw::engine
