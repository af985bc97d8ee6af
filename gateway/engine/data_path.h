// Which data path a device uses, decided before ADD_DEV from what the
// kernel really does (its ublk features and a fixed-buffer probe on the
// device's kind of socket), never from its version.
//
//   copy       the ublk driver copies between the request and a per-tag
//              buffer of ours; the socket ops use that buffer.
//   zero copy  the request's own pages sit in the queue's fixed-buffer
//              table at slot `tag`, and the socket ops move data straight
//              between them and the socket. The driver puts them there as
//              it hands over the request (UBLK_F_AUTO_BUF_REG, 6.16), or we
//              do with REGISTER_IO_BUF (UBLK_F_SUPPORT_ZERO_COPY, 6.15).
//   fused      zero copy without the table: each socket op is the slave of
//              an IORING_OP_FUSED_CMD whose master, UBLK_U_IO_FUSED_SUBMIT_IO,
//              lends it the request's pages (UBLK_F_FUSED_CMD: only kernels
//              carrying ublkgw's kernel/patches).
#ifndef UBLKGW_ENGINE_DATA_PATH_H_
#define UBLKGW_ENGINE_DATA_PATH_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/data_path_probe.h"
#include "engine/remedy.h"

namespace ublkgw::engine {

enum class DataPathMode : uint8_t { kAuto, kCopy, kZeroCopy, kFused };

// How a zero-copy queue moves a write's payload out of the request's pages.
enum class WriteOp : uint8_t {
  kSend,        // IORING_OP_SEND, fixed buffer: the socket copies into its buffers
  kSendZc,      // IORING_OP_SEND_ZC, fixed buffer: the NIC reads the pages
  kWriteFixed,  // IORING_OP_WRITE_FIXED on the socket (kernels before SEND's flag)
};
// How it receives a read's payload into them.
enum class ReadOp : uint8_t {
  kRecv,       // IORING_OP_RECV, fixed buffer, MSG_WAITALL
  kReadFixed,  // IORING_OP_READ_FIXED on the socket
};

// How a zero-copy queue gets a request's pages into its fixed-buffer table.
enum class BufferRegistration : uint8_t {
  kAuto,      // the driver, with each FETCH/COMMIT_AND_FETCH (UBLK_F_AUTO_BUF_REG)
  kExplicit,  // REGISTER_IO_BUF linked ahead of the request's send, UNREGISTER_IO_BUF
              // before its commit (UBLK_F_SUPPORT_ZERO_COPY)
  kFused,     // none: each op is lent the pages as a fused command's slave
              // (UBLK_F_FUSED_CMD)
};

struct DataPathPlan {
  bool zero_copy = false;
  // UBLK_F_BATCH_IO: requests arrive many to a completion (FETCH_IO_CMDS)
  // and are committed many to a command (COMMIT_IO_CMDS), on the copy path
  // or zero copy registered by the driver; only if DataPathTuning::batch_io.
  bool batch = false;
  BufferRegistration registration = BufferRegistration::kAuto;  // zero copy only
  // Zero copy only: writes of at least `send_zc_min_bytes` go with
  // `large_write`, smaller ones with `small_write`.
  WriteOp small_write = WriteOp::kSend;
  WriteOp large_write = WriteOp::kSend;
  uint32_t send_zc_min_bytes = 0;
  ReadOp read = ReadOp::kRecv;
  // One line for logs and the API: what was chosen and why; and what the
  // operator could change about it (control/ says how).
  std::string detail;
  Remedy remedy = Remedy::kNone;

  WriteOp WriteOpFor(uint32_t bytes) const {
    return bytes >= send_zc_min_bytes ? large_write : small_write;
  }
};

// The SEND_ZC threshold the docs suggest to an operator who enables it;
// never used by default: see ChooseDataPath.
inline constexpr uint32_t kDefaultSendZcMinBytes = 64 * 1024;

// Decides the path for a device. `ublk_features` is GET_FEATURES' answer;
// `probe` the fixed-buffer probe on the device's socket family. kAuto
// takes the fused path where the kernel offers it (UBLK_F_FUSED_CMD and
// io_uring's IORING_OP_FUSED_CMD), else zero copy where every piece works,
// else copy; kZeroCopy and kFused fail with FAILED_PRECONDITION naming the
// missing piece; kCopy always works.
// `send_zc_min_bytes`, when set, is the operator's threshold, used as
// given. Unset: no SEND_ZC while another op can send. SEND_ZC lends the
// request's pages to the network stack; where the stack must copy, split
// or orphan them (a TCP retransmit, veth, netem, loopback delivery) it
// takes page references, and Linux 7.2 warns of doing so to pages a block
// request may carry (seen in the soak test under netem). To a server on
// this host (`local_peer`) it would only add a copy and a notification.
absl::StatusOr<DataPathPlan> ChooseDataPath(DataPathMode mode, uint64_t ublk_features,
                                            const FixedBufferSupport& probe,
                                            std::optional<uint32_t> send_zc_min_bytes = {},
                                            bool local_peer = false);

// ProbeFixedBuffers(family), run once per family per process: the kernel
// does not change under a running daemon.
absl::StatusOr<FixedBufferSupport> CachedProbe(int family);

// The socket family (AF_INET, AF_INET6, AF_UNIX) of a connected socket.
absl::StatusOr<int> SocketFamily(int fd);
// Whether a connected socket's peer is on this host: a unix socket, or a
// loopback address (127/8, ::1, ::ffff:127/104).
bool PeerIsLocal(int fd);

// Socket operations an operator rules out, as if the probe had failed them: e.g. "send,recv" makes a 7.2 kernel
// choose like 6.16 to 7.1 do. Names: send, send-zc, recv, write-fixed,
// read-fixed. INVALID_ARGUMENT for any other name.
absl::StatusOr<FixedBufferSupport> ParseSocketOps(std::string_view list);
// `probe` without the operations set in `disabled` (fused_cmd included).
FixedBufferSupport WithoutOps(FixedBufferSupport probe, const FixedBufferSupport& disabled);

// ublk features an operator rules out for new devices, as if GET_FEATURES
// lacked them: "batch-io" makes per-tag commands of a 7.0+ kernel's batches;
// "auto-buf-reg"
// makes a 6.16+ kernel register buffers the way 6.15 does; "zero-copy" as
// well leaves only the copy path; "user-recovery" makes devices that go
// away with their daemon; "fused" leaves the fused path out. Names:
// batch-io, auto-buf-reg, zero-copy, user-recovery, fused (or the kernel's
// UBLK_F_BATCH_IO, UBLK_F_AUTO_BUF_REG, UBLK_F_SUPPORT_ZERO_COPY,
// UBLK_F_USER_RECOVERY, which rules out its _REISSUE too, UBLK_F_FUSED_CMD). Returns the
// mask; INVALID_ARGUMENT for any other name.
absl::StatusOr<uint64_t> ParseUblkFeatures(std::string_view list);

// The operator's say in the choice, for every device.
struct DataPathTuning {
  std::optional<uint32_t> send_zc_min_bytes;  // unset: automatic (ChooseDataPath)
  FixedBufferSupport disabled_ops;            // socket ops ruled out (ParseSocketOps)
  uint64_t disabled_ublk_features = 0;        // ublk features ruled out (ParseUblkFeatures)
  // Batched ublk commands (UBLK_F_BATCH_IO) where the driver offers them.
  // Off by default: measured, they cost more CPU per request than a
  // command per request (docs/BENCHMARKS.md).
  bool batch_io = false;
};

// The data path for a new device whose connections are sockets like
// `socket`, decided before ADD_DEV (zero copy changes the device's flags):
// from the ublk features `have` and what the fixed-buffer probe (cached)
// proves on the socket's family, less what `tuning` rules out.
absl::StatusOr<DataPathPlan> PlanDataPath(DataPathMode mode, uint64_t have,
                                          const DataPathTuning& tuning, int socket);
// The data path for a device that already has its `device_flags`: a
// restarted daemon serves it the way its buffers are registered, with the
// driver's `features`. FAILED_PRECONDITION when it cannot.
absl::StatusOr<DataPathPlan> PlanForDevice(uint64_t features, const DataPathTuning& tuning,
                                           uint64_t device_flags, int socket);
// The ublk device flags (ADD_DEV) a plan needs.
uint64_t DeviceFlags(const DataPathPlan& plan);

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_DATA_PATH_H_
