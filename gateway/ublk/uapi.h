// The ublk kernel ABI, as ublkgw uses it.
//
// Debian 12's linux-libc-dev (6.1) is far older than the kernels ublkgw runs
// on, so we define the ABI ourselves, from the facts of the kernel's
// include/uapi/linux/ublk_cmd.h and Documentation/block/ublk.rst. Names keep
// the kernel's words (without the UBLK_ prefix, inside namespace ublk) so the
// code reads against the kernel's documentation. Every struct is checked
// against its ABI size below; tests/unit/ublk/uapi_test.cc checks the command
// numbers against literal values.
//
// Never guess a feature from a command number: probe with GET_FEATURES.
#ifndef UBLKGW_UBLK_UAPI_H_
#define UBLKGW_UBLK_UAPI_H_

#include <cstddef>
#include <cstdint>

namespace ublkgw::ublk {

// ---------------------------------------------------------------------------
// ioctl-style command encoding (asm-generic/ioctl.h). ublk encodes every
// control and I/O command this way since UBLK_F_CMD_IOCTL_ENCODE.
// ---------------------------------------------------------------------------
inline constexpr uint32_t kIocNone = 0;
inline constexpr uint32_t kIocWrite = 1;
inline constexpr uint32_t kIocRead = 2;

constexpr uint32_t IocEncode(uint32_t dir, uint32_t type, uint32_t nr, uint32_t size) {
  return (dir << 30) | (size << 16) | (type << 8) | nr;
}
constexpr uint32_t IocNr(uint32_t cmd) { return cmd & 0xff; }

inline constexpr uint32_t kIocType = 'u';

// ---------------------------------------------------------------------------
// Structures
// ---------------------------------------------------------------------------

// Control command payload, carried in the command area of a 128-byte SQE of
// an IORING_OP_URING_CMD on /dev/ublk-control.
struct ublksrv_ctrl_cmd {
  uint32_t dev_id;    // target device; any value for ADD_DEV (-1: kernel picks)
  uint16_t queue_id;  // -1 unless the command is about one queue
  uint16_t len;       // length of the buffer at addr
  uint64_t addr;      // command-specific buffer, in or out
  uint64_t data[1];   // inline data
  uint16_t dev_path_len;  // unprivileged devices and GET_DEV_INFO2 only
  uint16_t pad;
  uint32_t reserved;
};
static_assert(sizeof(ublksrv_ctrl_cmd) == 32);
static_assert(offsetof(ublksrv_ctrl_cmd, addr) == 8);
static_assert(offsetof(ublksrv_ctrl_cmd, data) == 16);

// Device description: sent with ADD_DEV, returned by GET_DEV_INFO.
struct ublksrv_ctrl_dev_info {
  uint16_t nr_hw_queues;
  uint16_t queue_depth;
  uint16_t state;  // DevState
  uint16_t pad0;
  uint32_t max_io_buf_bytes;
  uint32_t dev_id;
  int32_t ublksrv_pid;
  uint32_t pad1;
  uint64_t flags;          // kF* feature flags requested / granted
  uint64_t ublksrv_flags;  // for the server; the kernel keeps it untouched
  uint32_t owner_uid;      // set by the kernel
  uint32_t owner_gid;      // set by the kernel
  uint64_t reserved1;
  uint64_t reserved2;
};
static_assert(sizeof(ublksrv_ctrl_dev_info) == 64);
static_assert(offsetof(ublksrv_ctrl_dev_info, flags) == 24);

// One I/O request, written by the kernel into the read-only descriptor array
// that the server mmaps from /dev/ublkcN, indexed by tag.
struct ublksrv_io_desc {
  uint32_t op_flags;  // op in bits 0-7, kIoF* flags in bits 8-31
  union {
    uint32_t nr_sectors;
    uint32_t nr_zones;  // REPORT_ZONES only
  };
  uint64_t start_sector;
  uint64_t addr;  // the server's buffer for this tag (copy path)
};
static_assert(sizeof(ublksrv_io_desc) == 24);

constexpr uint8_t IodOp(const ublksrv_io_desc& iod) { return iod.op_flags & 0xff; }
constexpr uint32_t IodFlags(const ublksrv_io_desc& iod) { return iod.op_flags >> 8; }

// I/O command payload, carried in the command area of a URING_CMD on
// /dev/ublkcN (FETCH_REQ, COMMIT_AND_FETCH_REQ, ...).
struct ublksrv_io_cmd {
  uint16_t q_id;
  uint16_t tag;
  int32_t result;  // COMMIT_* only: bytes done or -errno
  union {
    uint64_t addr;             // FETCH_*: the server's buffer for this tag
    uint64_t zone_append_lba;  // zoned devices
  };
};
static_assert(sizeof(ublksrv_io_cmd) == 16);

// Auto buffer registration (kFAutoBufReg): passed in the URING_CMD SQE's
// addr field, see AutoBufRegToSqeAddr.
struct ublk_auto_buf_reg {
  uint16_t index;  // fixed-buffer table slot to register the request buffer in
  uint8_t flags;   // kAutoBufRegFallback
  uint8_t reserved0;
  uint32_t reserved1;
};
static_assert(sizeof(ublk_auto_buf_reg) == 8);

inline constexpr uint8_t kAutoBufRegFallback = 1 << 0;

constexpr uint64_t AutoBufRegToSqeAddr(const ublk_auto_buf_reg& reg) {
  return uint64_t{reg.index} | uint64_t{reg.flags} << 16 | uint64_t{reg.reserved0} << 24 |
         uint64_t{reg.reserved1} << 32;
}

// Batch I/O element header (kFBatchIo).
struct ublk_elem_header {
  uint16_t tag;
  uint16_t buf_index;
  int32_t result;
};
static_assert(sizeof(ublk_elem_header) == 8);

struct ublk_batch_io {
  uint16_t q_id;
  uint16_t flags;
  uint16_t nr_elem;
  uint8_t elem_bytes;
  uint8_t reserved;
  uint64_t reserved2;
};
static_assert(sizeof(ublk_batch_io) == 16);

// ublk_batch_io.flags: which optional fields follow each element's header.
inline constexpr uint16_t kBatchFHasZoneLba = 1 << 0;
inline constexpr uint16_t kBatchFHasBufAddr = 1 << 1;  // the tag's buffer (copy path)
inline constexpr uint16_t kBatchFAutoBufRegFallback = 1 << 2;

// io_uring's uring_cmd_flags: a command that completes more than once
// (FETCH_IO_CMDS); not in every liburing's headers.
inline constexpr uint32_t kUringCmdMultishot = 1u << 1;

// Device parameters (SET_PARAMS / GET_PARAMS). `len` is the size of the
// struct the sender knows; an older kernel takes only the part it knows, so
// set only the `types` the running kernel supports.
struct ublk_param_basic {
  uint32_t attrs;  // kAttr*
  uint8_t logical_bs_shift;
  uint8_t physical_bs_shift;
  uint8_t io_opt_shift;
  uint8_t io_min_shift;
  uint32_t max_sectors;
  uint32_t chunk_sectors;
  uint64_t dev_sectors;
  uint64_t virt_boundary_mask;
};
static_assert(sizeof(ublk_param_basic) == 32);

struct ublk_param_discard {
  uint32_t discard_alignment;
  uint32_t discard_granularity;
  uint32_t max_discard_sectors;
  uint32_t max_write_zeroes_sectors;
  uint16_t max_discard_segments;
  uint16_t reserved0;
};
static_assert(sizeof(ublk_param_discard) == 20);

// Read-only: the kernel fills it once the device is started.
struct ublk_param_devt {
  uint32_t char_major;
  uint32_t char_minor;
  uint32_t disk_major;
  uint32_t disk_minor;
};
static_assert(sizeof(ublk_param_devt) == 16);

struct ublk_param_zoned {
  uint32_t max_open_zones;
  uint32_t max_active_zones;
  uint32_t max_zone_append_sectors;
  uint8_t reserved[20];
};
static_assert(sizeof(ublk_param_zoned) == 32);

struct ublk_param_dma_align {
  uint32_t alignment;
  uint8_t pad[4];
};
static_assert(sizeof(ublk_param_dma_align) == 8);

struct ublk_param_segment {
  uint64_t seg_boundary_mask;  // +1 must be a power of two, >= 4096 in sum
  uint32_t max_segment_size;   // >= 4096
  uint16_t max_segments;
  uint8_t pad[2];
};
static_assert(sizeof(ublk_param_segment) == 16);

struct ublk_param_integrity {
  uint32_t flags;
  uint16_t max_integrity_segments;
  uint8_t interval_exp;
  uint8_t metadata_size;
  uint8_t pi_offset;
  uint8_t csum_type;
  uint8_t tag_size;
  uint8_t pad[5];
};
static_assert(sizeof(ublk_param_integrity) == 16);

struct ublk_params {
  uint32_t len;
  uint32_t types;  // kParamType*
  ublk_param_basic basic;
  ublk_param_discard discard;
  ublk_param_devt devt;
  ublk_param_zoned zoned;
  ublk_param_dma_align dma;
  ublk_param_segment seg;
  ublk_param_integrity integrity;
};
static_assert(offsetof(ublk_params, basic) == 8);
static_assert(offsetof(ublk_params, discard) == 40);
static_assert(offsetof(ublk_params, devt) == 60);
static_assert(offsetof(ublk_params, zoned) == 76);
static_assert(offsetof(ublk_params, dma) == 108);
static_assert(offsetof(ublk_params, seg) == 120);
static_assert(offsetof(ublk_params, integrity) == 136);
static_assert(sizeof(ublk_params) == 152);

// ---------------------------------------------------------------------------
// Control commands (URING_CMD on /dev/ublk-control, SQE128)
// ---------------------------------------------------------------------------
namespace internal {
constexpr uint32_t CtrlR(uint32_t nr) {
  return IocEncode(kIocRead, kIocType, nr, sizeof(ublksrv_ctrl_cmd));
}
constexpr uint32_t CtrlWR(uint32_t nr) {
  return IocEncode(kIocRead | kIocWrite, kIocType, nr, sizeof(ublksrv_ctrl_cmd));
}
constexpr uint32_t IoWR(uint32_t nr, uint32_t size) {
  return IocEncode(kIocRead | kIocWrite, kIocType, nr, size);
}
}  // namespace internal

inline constexpr uint32_t kCmdGetQueueAffinity = internal::CtrlR(0x01);
inline constexpr uint32_t kCmdGetDevInfo = internal::CtrlR(0x02);
inline constexpr uint32_t kCmdAddDev = internal::CtrlWR(0x04);
inline constexpr uint32_t kCmdDelDev = internal::CtrlWR(0x05);
inline constexpr uint32_t kCmdStartDev = internal::CtrlWR(0x06);
inline constexpr uint32_t kCmdStopDev = internal::CtrlWR(0x07);
inline constexpr uint32_t kCmdSetParams = internal::CtrlWR(0x08);
inline constexpr uint32_t kCmdGetParams = internal::CtrlR(0x09);
inline constexpr uint32_t kCmdStartUserRecovery = internal::CtrlWR(0x10);
inline constexpr uint32_t kCmdEndUserRecovery = internal::CtrlWR(0x11);
inline constexpr uint32_t kCmdGetDevInfo2 = internal::CtrlR(0x12);
inline constexpr uint32_t kCmdGetFeatures = internal::CtrlR(0x13);
inline constexpr uint32_t kCmdDelDevAsync = internal::CtrlR(0x14);
inline constexpr uint32_t kCmdUpdateSize = internal::CtrlWR(0x15);
inline constexpr uint32_t kCmdQuiesceDev = internal::CtrlWR(0x16);
inline constexpr uint32_t kCmdTryStopDev = internal::CtrlWR(0x17);
inline constexpr uint32_t kCmdRegBuf = internal::CtrlWR(0x18);
inline constexpr uint32_t kCmdUnregBuf = internal::CtrlWR(0x19);

// ---------------------------------------------------------------------------
// I/O commands (URING_CMD on /dev/ublkcN)
// ---------------------------------------------------------------------------
inline constexpr uint32_t kIoFetchReq = internal::IoWR(0x20, sizeof(ublksrv_io_cmd));
inline constexpr uint32_t kIoCommitAndFetchReq = internal::IoWR(0x21, sizeof(ublksrv_io_cmd));
inline constexpr uint32_t kIoNeedGetData = internal::IoWR(0x22, sizeof(ublksrv_io_cmd));
inline constexpr uint32_t kIoRegisterIoBuf = internal::IoWR(0x23, sizeof(ublksrv_io_cmd));
inline constexpr uint32_t kIoUnregisterIoBuf = internal::IoWR(0x24, sizeof(ublksrv_io_cmd));
inline constexpr uint32_t kIoPrepIoCmds = internal::IoWR(0x25, sizeof(ublk_batch_io));
inline constexpr uint32_t kIoCommitIoCmds = internal::IoWR(0x26, sizeof(ublk_batch_io));
inline constexpr uint32_t kIoFetchIoCmds = internal::IoWR(0x27, sizeof(ublk_batch_io));
// Only on kernels carrying kernel/patches: the master of an
// IORING_OP_FUSED_CMD (kIoringOpFusedCmd), lending the request's pages to
// the SQE's second half (kFFusedCmd).
inline constexpr uint32_t kIoFusedSubmitIo = internal::IoWR(0x70, sizeof(ublksrv_io_cmd));
inline constexpr uint8_t kIoringOpFusedCmd = 0x80;

// Results of an I/O command's CQE. Only kIoResAbort means "do not re-fetch".
inline constexpr int32_t kIoResOk = 0;
inline constexpr int32_t kIoResNeedGetData = 1;
// kIoResAbort is -ENODEV.

// ---------------------------------------------------------------------------
// Feature flags (ublksrv_ctrl_dev_info.flags, GET_FEATURES)
// ---------------------------------------------------------------------------
inline constexpr uint64_t kFSupportZeroCopy = 1ULL << 0;
inline constexpr uint64_t kFUringCmdCompInTask = 1ULL << 1;
inline constexpr uint64_t kFNeedGetData = 1ULL << 2;
inline constexpr uint64_t kFUserRecovery = 1ULL << 3;
inline constexpr uint64_t kFUserRecoveryReissue = 1ULL << 4;
inline constexpr uint64_t kFUnprivilegedDev = 1ULL << 5;
inline constexpr uint64_t kFCmdIoctlEncode = 1ULL << 6;
inline constexpr uint64_t kFUserCopy = 1ULL << 7;
inline constexpr uint64_t kFZoned = 1ULL << 8;
inline constexpr uint64_t kFUserRecoveryFailIo = 1ULL << 9;
inline constexpr uint64_t kFUpdateSize = 1ULL << 10;
inline constexpr uint64_t kFAutoBufReg = 1ULL << 11;
inline constexpr uint64_t kFQuiesce = 1ULL << 12;
inline constexpr uint64_t kFPerIoDaemon = 1ULL << 13;
inline constexpr uint64_t kFBufRegOffDaemon = 1ULL << 14;
inline constexpr uint64_t kFBatchIo = 1ULL << 15;
inline constexpr uint64_t kFIntegrity = 1ULL << 16;
inline constexpr uint64_t kFSafeStopDev = 1ULL << 17;
inline constexpr uint64_t kFNoAutoPartScan = 1ULL << 18;
inline constexpr uint64_t kFFusedCmd = 1ULL << 48;  // kernel/patches only
inline constexpr uint64_t kFShmemZc = 1ULL << 19;

// Device states (ublksrv_ctrl_dev_info.state).
enum class DevState : uint16_t {
  kDead = 0,
  kLive = 1,
  kQuiesced = 2,
  kFailIo = 3,
};

// ---------------------------------------------------------------------------
// I/O operations and flags (ublksrv_io_desc.op_flags)
// ---------------------------------------------------------------------------
inline constexpr uint8_t kIoOpRead = 0;
inline constexpr uint8_t kIoOpWrite = 1;
inline constexpr uint8_t kIoOpFlush = 2;
inline constexpr uint8_t kIoOpDiscard = 3;
inline constexpr uint8_t kIoOpWriteSame = 4;
inline constexpr uint8_t kIoOpWriteZeroes = 5;
inline constexpr uint8_t kIoOpZoneOpen = 10;
inline constexpr uint8_t kIoOpZoneClose = 11;
inline constexpr uint8_t kIoOpZoneFinish = 12;
inline constexpr uint8_t kIoOpZoneAppend = 13;
inline constexpr uint8_t kIoOpZoneResetAll = 14;
inline constexpr uint8_t kIoOpZoneReset = 15;
inline constexpr uint8_t kIoOpReportZones = 18;

// Flags as they appear in op_flags (bits 8 and up).
inline constexpr uint32_t kIoFFailfastDev = 1U << 8;
inline constexpr uint32_t kIoFFailfastTransport = 1U << 9;
inline constexpr uint32_t kIoFFailfastDriver = 1U << 10;
inline constexpr uint32_t kIoFMeta = 1U << 11;
inline constexpr uint32_t kIoFFua = 1U << 13;
inline constexpr uint32_t kIoFNoUnmap = 1U << 15;
inline constexpr uint32_t kIoFSwap = 1U << 16;
inline constexpr uint32_t kIoFNeedRegBuf = 1U << 17;
inline constexpr uint32_t kIoFIntegrity = 1U << 18;
inline constexpr uint32_t kIoFShmemZc = 1U << 19;

// ---------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------
inline constexpr uint32_t kAttrReadOnly = 1 << 0;
inline constexpr uint32_t kAttrRotational = 1 << 1;
inline constexpr uint32_t kAttrVolatileCache = 1 << 2;
inline constexpr uint32_t kAttrFua = 1 << 3;

inline constexpr uint32_t kParamTypeBasic = 1 << 0;
inline constexpr uint32_t kParamTypeDiscard = 1 << 1;
inline constexpr uint32_t kParamTypeDevt = 1 << 2;
inline constexpr uint32_t kParamTypeZoned = 1 << 3;
inline constexpr uint32_t kParamTypeDmaAlign = 1 << 4;
inline constexpr uint32_t kParamTypeSegment = 1 << 5;
inline constexpr uint32_t kParamTypeIntegrity = 1 << 6;

inline constexpr uint32_t kMinSegmentSize = 4096;

// ---------------------------------------------------------------------------
// Limits and the /dev/ublkcN offsets
// ---------------------------------------------------------------------------
inline constexpr uint32_t kMaxQueueDepth = 4096;
inline constexpr uint32_t kMaxNrQueues = 1U << 12;

// mmap offset of queue q_id's descriptor array on /dev/ublkcN. Each queue's
// array is laid out at a fixed stride of kMaxQueueDepth descriptors, rounded
// up to whole pages.
inline constexpr uint64_t kCmdBufOffset = 0;
constexpr uint64_t IoDescArraySize(uint32_t queue_depth, uint64_t page_size) {
  const uint64_t bytes = uint64_t{queue_depth} * sizeof(ublksrv_io_desc);
  return (bytes + page_size - 1) / page_size * page_size;
}
constexpr uint64_t IoDescMmapOffset(uint16_t q_id, uint64_t page_size) {
  return kCmdBufOffset + uint64_t{q_id} * IoDescArraySize(kMaxQueueDepth, page_size);
}

// pread/pwrite offset on /dev/ublkcN for kFUserCopy: the request buffer of
// (q_id, tag), plus `offset` bytes into it.
inline constexpr uint64_t kIoBufOffset = 0x80000000ULL;
inline constexpr int kIoBufBits = 25;  // one request buffer is at most 32 MiB
inline constexpr int kTagOff = kIoBufBits;
inline constexpr int kTagBits = 16;
inline constexpr int kQidOff = kTagOff + kTagBits;
inline constexpr int kQidBits = 12;
constexpr uint64_t UserCopyOffset(uint16_t q_id, uint16_t tag, uint32_t offset) {
  return kIoBufOffset + (uint64_t{q_id} << kQidOff) + (uint64_t{tag} << kTagOff) + offset;
}

}  // namespace ublkgw::ublk

#endif  // UBLKGW_UBLK_UAPI_H_
