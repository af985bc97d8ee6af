#include "ublk/features.h"

#include <array>
#include <bit>

#include "ublk/uapi.h"

namespace ublkgw::ublk {

namespace {

constexpr std::array kFeatures = {
    FeatureInfo{kFSupportZeroCopy, "UBLK_F_SUPPORT_ZERO_COPY",
                "request buffers can be registered into io_uring (REGISTER_IO_BUF)"},
    FeatureInfo{kFUringCmdCompInTask, "UBLK_F_URING_CMD_COMP_IN_TASK",
                "complete I/O commands from task work"},
    FeatureInfo{kFNeedGetData, "UBLK_F_NEED_GET_DATA",
                "the server asks for write data before it is copied"},
    FeatureInfo{kFUserRecovery, "UBLK_F_USER_RECOVERY",
                "a device survives its server's exit; a new server re-adopts it"},
    FeatureInfo{kFUserRecoveryReissue, "UBLK_F_USER_RECOVERY_REISSUE",
                "on recovery, requests in flight are re-issued to the new server"},
    FeatureInfo{kFUnprivilegedDev, "UBLK_F_UNPRIVILEGED_DEV",
                "unprivileged users may create devices"},
    FeatureInfo{kFCmdIoctlEncode, "UBLK_F_CMD_IOCTL_ENCODE",
                "commands are ioctl-encoded"},
    FeatureInfo{kFUserCopy, "UBLK_F_USER_COPY",
                "the server copies data with pread/pwrite on /dev/ublkcN"},
    FeatureInfo{kFZoned, "UBLK_F_ZONED", "zoned block devices"},
    FeatureInfo{kFUserRecoveryFailIo, "UBLK_F_USER_RECOVERY_FAIL_IO",
                "recoverable devices fail I/O while no server runs"},
    FeatureInfo{kFUpdateSize, "UBLK_F_UPDATE_SIZE", "resize a live device (UPDATE_SIZE)"},
    FeatureInfo{kFAutoBufReg, "UBLK_F_AUTO_BUF_REG",
                "request buffers are registered into io_uring automatically"},
    FeatureInfo{kFQuiesce, "UBLK_F_QUIESCE", "quiesce a live device (QUIESCE_DEV)"},
    FeatureInfo{kFPerIoDaemon, "UBLK_F_PER_IO_DAEMON",
                "each request may be served by its own thread"},
    FeatureInfo{kFBufRegOffDaemon, "UBLK_F_BUF_REG_OFF_DAEMON",
                "buffers may be registered from any thread"},
    FeatureInfo{kFBatchIo, "UBLK_F_BATCH_IO", "fetch and commit I/O commands in batches"},
    FeatureInfo{kFIntegrity, "UBLK_F_INTEGRITY", "requests carry integrity metadata"},
    FeatureInfo{kFSafeStopDev, "UBLK_F_SAFE_STOP_DEV",
                "stop a device only if nobody has it open (TRY_STOP_DEV)"},
    FeatureInfo{kFNoAutoPartScan, "UBLK_F_NO_AUTO_PART_SCAN",
                "no partition scan when a device starts"},
    FeatureInfo{kFShmemZc, "UBLK_F_SHMEM_ZC", "zero copy through registered shared memory"},
    FeatureInfo{kFFusedCmd, "UBLK_F_FUSED_CMD",
                "the request's pages lent to one io_uring op by IORING_OP_FUSED_CMD "
                "(ublkgw's kernel/ series)"},
};

constexpr uint64_t KnownMask() {
  uint64_t mask = 0;
  for (const auto& f : kFeatures) mask |= f.flag;
  return mask;
}

// The table must be one bit per entry, in order: mainline's bits with no
// gaps (a missing or repeated entry would print the wrong name for a
// kernel's bit), then those of kernel/patches, which stand apart.
constexpr bool TableIsDense() {
  size_t i = 0;
  for (; i < kFeatures.size() && kFeatures[i].flag < kFFusedCmd; ++i) {
    if (kFeatures[i].flag != (1ULL << i)) return false;
  }
  for (; i < kFeatures.size(); ++i) {
    if (std::popcount(kFeatures[i].flag) != 1 || kFeatures[i].flag <= kFeatures[i - 1].flag) {
      return false;
    }
  }
  return true;
}
static_assert(TableIsDense());

}  // namespace

std::span<const FeatureInfo> KnownFeatures() { return kFeatures; }

std::vector<FeatureInfo> FeaturesIn(uint64_t mask) {
  std::vector<FeatureInfo> out;
  for (const auto& f : kFeatures) {
    if (mask & f.flag) out.push_back(f);
  }
  return out;
}

std::vector<int> UnknownFeatureBits(uint64_t mask) {
  std::vector<int> bits;
  const uint64_t unknown = mask & ~KnownMask();
  for (int bit = 0; bit < 64; ++bit) {
    if (unknown & (1ULL << bit)) bits.push_back(bit);
  }
  return bits;
}

}  // namespace ublkgw::ublk
