// How a queue worker tags its io_uring operations (user_data), shared by
// the files that implement QueueWorker. Not for use elsewhere.
#ifndef UBLKGW_ENGINE_QUEUE_WORKER_OPS_H_
#define UBLKGW_ENGINE_QUEUE_WORKER_OPS_H_

#include <cstddef>
#include <cstdint>

namespace ublkgw::engine::worker_ops {

// At most this many requests share one send chain.
inline constexpr size_t kMaxBatch = 64;

// The kind of operation sits in the top 4 bits, a tag in the low 16 bits,
// and bits 16-59 are the op's own.
//   kSend:     bits 16-31 hold the op's index in the send chain;
//   kZeroFill: bits 16-37 the offset and 38-59 the length less one of the
//              hole, so a request of up to kFillMaxBytes can have one;
//   kBufReg:   bit 16 set for UNREGISTER_IO_BUF (a failure: they post no
//              completion when they succeed).
//   kFusedSlave: the slave of a fused command on `tag`. Its master carries
//              the op's own user_data and, once the slave is done, its
//              result; the slave posts only when it fails, but a SEND_ZC
//              slave posts its result and its notification.
enum class Op : uint8_t {
  kIoCmd = 1,
  kSend = 2,
  kRecv = 3,
  kWake = 4,
  kZeroFill = 5,
  kBufReg = 6,
  kCancel = 7,
  kFusedSlave = 8,  // a fused command's slave: its CQEs, if any, are ignored (the master's counts)
  // UBLK_F_BATCH_IO: PREP_IO_CMDS (once), COMMIT_IO_CMDS (bits 16-31: its
  // buffer's index), and the multishot FETCH_IO_CMDS.
  kBatchPrep = 9,
  kBatchCommit = 10,
  kBatchFetch = 11,
};

constexpr uint64_t UserData(Op op, uint16_t tag = 0, uint64_t extra = 0) {
  return uint64_t{static_cast<uint8_t>(op)} << 60 | extra << 16 | tag;
}
constexpr Op OpOf(uint64_t user_data) { return static_cast<Op>(user_data >> 60); }
constexpr uint16_t TagOf(uint64_t user_data) { return static_cast<uint16_t>(user_data); }

constexpr uint64_t SendData(uint16_t tag, uint16_t index) {
  return UserData(Op::kSend, tag, index);
}
constexpr uint16_t SendIndexOf(uint64_t user_data) { return static_cast<uint16_t>(user_data >> 16); }

constexpr uint64_t CommitBatchData(uint16_t buffer) {
  return UserData(Op::kBatchCommit, 0, buffer);
}
constexpr uint16_t CommitBufferOf(uint64_t user_data) {
  return static_cast<uint16_t>(user_data >> 16);
}

constexpr uint64_t BufRegData(uint16_t tag, bool unregister) {
  return UserData(Op::kBufReg, tag, unregister ? 1 : 0);
}
constexpr bool IsUnregister(uint64_t user_data) { return (user_data >> 16 & 1) != 0; }

inline constexpr unsigned kFillFieldBits = 22;
inline constexpr uint32_t kFillFieldMask = (1u << kFillFieldBits) - 1;
// The largest request whose holes FillData can describe: 4 MiB.
inline constexpr uint32_t kFillMaxBytes = 1u << kFillFieldBits;
// `offset` < kFillMaxBytes, 0 < `len` <= kFillMaxBytes.
constexpr uint64_t FillData(uint16_t tag, uint32_t offset, uint32_t len) {
  return UserData(Op::kZeroFill, tag, uint64_t{offset} | uint64_t{len - 1} << kFillFieldBits);
}
constexpr uint32_t FillOffsetOf(uint64_t user_data) {
  return static_cast<uint32_t>(user_data >> 16) & kFillFieldMask;
}
constexpr uint32_t FillLenOf(uint64_t user_data) {
  return (static_cast<uint32_t>(user_data >> (16 + kFillFieldBits)) & kFillFieldMask) + 1;
}
static_assert(FillOffsetOf(FillData(7, 524288, 4096)) == 524288);
static_assert(FillLenOf(FillData(7, 4096, 524288)) == 524288);
static_assert(FillLenOf(FillData(7, 0, kFillMaxBytes)) == kFillMaxBytes);
static_assert(FillLenOf(FillData(7, kFillMaxBytes - 1, 1)) == 1);
static_assert(FillOffsetOf(FillData(7, kFillMaxBytes - 1, kFillMaxBytes)) == kFillMaxBytes - 1);
static_assert(TagOf(FillData(1023, kFillMaxBytes - 1, kFillMaxBytes)) == 1023);
static_assert(OpOf(FillData(1023, kFillMaxBytes - 1, kFillMaxBytes)) == Op::kZeroFill);
static_assert(OpOf(UserData(Op::kFusedSlave, 0xffff, (uint64_t{1} << 44) - 1)) == Op::kFusedSlave);

}  // namespace ublkgw::engine::worker_ops

#endif  // UBLKGW_ENGINE_QUEUE_WORKER_OPS_H_
