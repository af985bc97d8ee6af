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
#include <vector>

#include "absl/status/status.h"
#include "ublk/io_queue.h"
#include "ublk/uapi.h"

namespace ublkgw::engine {

// Threads: every method is called on the worker's thread.
class UblkQueue {
 public:
  virtual ~UblkQueue() = default;

  // Called once, before anything else, with the worker's ring (whose fd a
  // fake posts completions to). `batch`: the device has UBLK_F_BATCH_IO,
  // and requests come through FetchBatch (the queue registers the buffers
  // their tags arrive in).
  virtual absl::Status Open(io_uring* ring, bool batch) = 0;

  // A copy of `tag`'s descriptor, valid once its FETCH_REQ (or
  // COMMIT_AND_FETCH_REQ) has completed with a request.
  virtual ublk::ublksrv_io_desc Desc(uint16_t tag) const = 0;

  // Fills `sqe` with the I/O command `cmd_op` (ublk::kIo*) for `tag`:
  // `result` is what a commit reports, `addr` the tag's buffer (copy path)
  // or the fixed-buffer slot (REGISTER_IO_BUF), `user_data` what its
  // completion carries.
  virtual void Prep(io_uring_sqe* sqe, uint32_t cmd_op, uint16_t tag, int32_t result,
                    uint64_t addr, uint64_t user_data) = 0;

  // UBLK_F_BATCH_IO: fills `sqe` with PREP_IO_CMDS or COMMIT_IO_CMDS
  // (ublk::PrepBatchCmd) for the `nr_elem` elements at `elems`, which stay
  // as they are until it completes.
  virtual void PrepBatch(io_uring_sqe* sqe, uint32_t cmd_op, uint16_t flags, const uint8_t* elems,
                         uint16_t nr_elem, uint8_t elem_bytes, uint64_t user_data) = 0;
  // UBLK_F_BATCH_IO: the multishot FETCH_IO_CMDS (ublk::PrepFetchBatch),
  // into the queue's own buffers.
  virtual void PrepFetchBatch(io_uring_sqe* sqe, uint64_t user_data) = 0;
  // The tags that a FETCH_IO_CMDS completion with a buffer
  // (IORING_CQE_F_BUFFER) brought, appended to `tags`; the buffer goes back
  // to the kernel. False, with nothing appended, when the completion
  // cannot be one: no buffer of ours, or a length that is no whole number
  // of tags or more than a buffer holds.
  virtual bool TakeFetched(const io_uring_cqe& cqe, std::vector<uint16_t>* tags) = 0;

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
  // The worker closes its ring first: the kernel writes into the fetch
  // buffers only while the ring lives.
  ~KernelUblkQueue() override;

  absl::Status Open(io_uring* ring, bool batch) override;
  ublk::ublksrv_io_desc Desc(uint16_t tag) const override { return descs_->Get(tag); }
  void Prep(io_uring_sqe* sqe, uint32_t cmd_op, uint16_t tag, int32_t result, uint64_t addr,
            uint64_t user_data) override;
  void PrepBatch(io_uring_sqe* sqe, uint32_t cmd_op, uint16_t flags, const uint8_t* elems,
                 uint16_t nr_elem, uint8_t elem_bytes, uint64_t user_data) override;
  void PrepFetchBatch(io_uring_sqe* sqe, uint64_t user_data) override;
  bool TakeFetched(const io_uring_cqe& cqe, std::vector<uint16_t>* tags) override;
  bool Fuse(io_uring_sqe* sqe, uint16_t tag, uint64_t slave_user_data) override;

  // FETCH_IO_CMDS' buffers: each holds the tags of up to 128 requests (the
  // most the kernel puts in one completion).
  static constexpr uint16_t kFetchBuffers = 16;  // a power of two
  static constexpr uint32_t kFetchBufferBytes = 128 * sizeof(uint16_t);
  static constexpr uint16_t kFetchGroup = 0;

 private:
  int char_fd_;
  uint16_t q_id_;
  uint16_t depth_;
  std::optional<ublk::IoDescMap> descs_;
  io_uring_buf_ring* fetch_ring_ = nullptr;  // page-aligned, its own mapping
  std::vector<uint16_t> fetch_space_;        // kFetchBuffers buffers
};

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_UBLK_QUEUE_H_
