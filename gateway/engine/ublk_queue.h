// The ublk side of one queue, as its worker sees it: the I/O descriptors
// the kernel writes, and the URING_CMDs that fetch requests and commit
// results. The worker reaches the kernel only through this seam, so a test
// can run the real worker, on a real io_uring, against a fake queue
// (tests/unit/engine/fake_ublk_queue.h) on a host without ublk.
#ifndef UBLKGW_ENGINE_UBLK_QUEUE_H_
#define UBLKGW_ENGINE_UBLK_QUEUE_H_

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "ublk/io_queue.h"
#include "ublk/uapi.h"

namespace ublkgw::engine {

// Threads: every method is called on the worker's thread.
class UblkQueue {
 public:
  virtual ~UblkQueue() = default;

  // Called once, before anything else, with the worker's ring (whose fd a
  // fake posts completions to).
  virtual absl::Status Open(io_uring* ring) = 0;

  // A copy of `tag`'s descriptor, valid once its FETCH_REQ (or
  // COMMIT_AND_FETCH_REQ) has completed with a request.
  virtual ublk::ublksrv_io_desc Desc(uint16_t tag) const = 0;

  // Fills `sqe` with the I/O command `cmd_op` (ublk::kIo*) for `tag`:
  // `result` is what a commit reports, `addr` the tag's buffer (copy path)
  // or the fixed-buffer slot (REGISTER_IO_BUF), `user_data` what its
  // completion carries.
  virtual void Prep(io_uring_sqe* sqe, uint32_t cmd_op, uint16_t tag, int32_t result,
                    uint64_t addr, uint64_t user_data) = 0;

  // Zero copy: the address at which fixed buffer `tag` starts, as the
  // ring's fixed-buffer ops name a place in it. A request's pages are a
  // kernel buffer, addressed by offset from 0; a fake's buffer in user
  // memory is addressed by its own address.
  virtual uint64_t FixedBufferBase(uint16_t /*tag*/) const { return 0; }

  // The fused data path: makes `sqe` (the first half of a 128-byte SQE),
  // an operation on fixed buffer `tag` at FixedBufferBase(tag) + offset,
  // the slave of an IORING_OP_FUSED_CMD whose master lends it the pages of
  // `tag`'s request (ublk::FuseOnRequest). The SQE's completion (its
  // user_data, its result) is then the master's; the slave's own, posted
  // only on failure, carries `slave_user_data`. False if the operation
  // cannot be a slave: a bug of the caller's.
  virtual bool Fuse(io_uring_sqe* sqe, uint16_t tag, uint64_t slave_user_data) = 0;
};

// The real thing: /dev/ublkcN's queue `q_id`. `char_fd` must outlive it.
class KernelUblkQueue final : public UblkQueue {
 public:
  KernelUblkQueue(int char_fd, uint16_t q_id, uint16_t depth)
      : char_fd_(char_fd), q_id_(q_id), depth_(depth) {}

  absl::Status Open(io_uring* ring) override;
  ublk::ublksrv_io_desc Desc(uint16_t tag) const override { return descs_->Get(tag); }
  void Prep(io_uring_sqe* sqe, uint32_t cmd_op, uint16_t tag, int32_t result, uint64_t addr,
            uint64_t user_data) override;
  bool Fuse(io_uring_sqe* sqe, uint16_t tag, uint64_t slave_user_data) override;

 private:
  int char_fd_;
  uint16_t q_id_;
  uint16_t depth_;
  std::optional<ublk::IoDescMap> descs_;
};

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_UBLK_QUEUE_H_
