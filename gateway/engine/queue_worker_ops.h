// How a queue worker tags its io_uring operations (user_data), shared by
// the files that implement QueueWorker. Not for use elsewhere.
#ifndef UBLKGW_ENGINE_QUEUE_WORKER_OPS_H_
#define UBLKGW_ENGINE_QUEUE_WORKER_OPS_H_

#include <cstddef>
#include <cstdint>

namespace ublkgw::engine::worker_ops {

// At most this many requests share one send chain.
inline constexpr size_t kMaxBatch = 64;

// The kind of operation sits in the top byte, a tag in the low 16 bits.
//   kSend:     bits 16-31 hold the op's index in the send chain;
//   kZeroFill: bits 16-35 the offset and 36-55 the length of the hole;
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
  kFusedSlave = 8  // a fused command's slave: its CQEs, if any, are ignored (the master's counts)
};

constexpr uint64_t UserData(Op op, uint16_t tag = 0, uint64_t extra = 0) {
  return uint64_t{static_cast<uint8_t>(op)} << 56 | extra << 16 | tag;
}
constexpr Op OpOf(uint64_t user_data) { return static_cast<Op>(user_data >> 56); }
constexpr uint16_t TagOf(uint64_t user_data) { return static_cast<uint16_t>(user_data); }

constexpr uint64_t SendData(uint16_t tag, uint16_t index) {
  return UserData(Op::kSend, tag, index);
}
constexpr uint16_t SendIndexOf(uint64_t user_data) { return static_cast<uint16_t>(user_data >> 16); }

constexpr uint64_t BufRegData(uint16_t tag, bool unregister) {
  return UserData(Op::kBufReg, tag, unregister ? 1 : 0);
}
constexpr bool IsUnregister(uint64_t user_data) { return (user_data >> 16 & 1) != 0; }

inline constexpr uint32_t kFillFieldMax = (1u << 20) - 1;
constexpr uint64_t FillData(uint16_t tag, uint32_t offset, uint32_t len) {
  return UserData(Op::kZeroFill, tag, uint64_t{offset} | uint64_t{len} << 20);
}
constexpr uint32_t FillOffsetOf(uint64_t user_data) {
  return static_cast<uint32_t>(user_data >> 16) & kFillFieldMax;
}
constexpr uint32_t FillLenOf(uint64_t user_data) {
  return static_cast<uint32_t>(user_data >> 36) & kFillFieldMax;
}
static_assert(FillOffsetOf(FillData(7, 524288, 4096)) == 524288);
static_assert(FillLenOf(FillData(7, 4096, 524288)) == 524288);
static_assert(TagOf(FillData(1023, kFillFieldMax, kFillFieldMax)) == 1023);
static_assert(OpOf(FillData(1023, kFillFieldMax, kFillFieldMax)) == Op::kZeroFill);

}  // namespace ublkgw::engine::worker_ops

#endif  // UBLKGW_ENGINE_QUEUE_WORKER_OPS_H_
