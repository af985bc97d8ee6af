#include "engine/ublk_queue.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "base/status.h"

namespace ublkgw::engine {

KernelUblkQueue::~KernelUblkQueue() {
  if (fetch_ring_ != nullptr) munmap(fetch_ring_, sizeof(io_uring_buf) * kFetchBuffers);
}

absl::Status KernelUblkQueue::Open(io_uring* ring, bool batch) {
  auto descs = ublk::IoDescMap::Map(char_fd_, q_id_, depth_);
  if (!descs.ok()) return descs.status();
  descs_.emplace(*std::move(descs));
  if (!batch) return absl::OkStatus();
  // The provided-buffer ring FETCH_IO_CMDS takes its buffers from.
  const size_t ring_bytes = sizeof(io_uring_buf) * kFetchBuffers;
  void* mem = mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return ErrnoToStatus(errno, "mmap of the fetch buffer ring");
  fetch_ring_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uintptr_t>(mem);
  reg.ring_entries = kFetchBuffers;
  reg.bgid = kFetchGroup;
  if (int r = io_uring_register_buf_ring(ring, &reg, 0); r < 0) {
    return ErrnoToStatus(-r, "registering the buffers FETCH_IO_CMDS fills (io_uring buffer ring)");
  }
  io_uring_buf_ring_init(fetch_ring_);
  fetch_space_.assign(size_t{kFetchBuffers} * kFetchBufferBytes / sizeof(uint16_t), 0);
  const int mask = io_uring_buf_ring_mask(kFetchBuffers);
  for (uint16_t bid = 0; bid < kFetchBuffers; ++bid) {
    io_uring_buf_ring_add(fetch_ring_, fetch_space_.data() + bid * (kFetchBufferBytes / 2),
                          kFetchBufferBytes, bid, mask, bid);
  }
  io_uring_buf_ring_advance(fetch_ring_, kFetchBuffers);
  return absl::OkStatus();
}

void KernelUblkQueue::Prep(io_uring_sqe* sqe, uint32_t cmd_op, uint16_t tag, int32_t result,
                           uint64_t addr, uint64_t user_data) {
  ublk::PrepIoCmd(sqe, char_fd_, cmd_op, q_id_, tag, result, addr);
  io_uring_sqe_set_data64(sqe, user_data);
}

void KernelUblkQueue::PrepBatch(io_uring_sqe* sqe, uint32_t cmd_op, uint16_t flags,
                                const uint8_t* elems, uint16_t nr_elem, uint8_t elem_bytes,
                                uint64_t user_data) {
  ublk::PrepBatchCmd(sqe, char_fd_, cmd_op, q_id_, flags, elems, nr_elem, elem_bytes);
  io_uring_sqe_set_data64(sqe, user_data);
}

void KernelUblkQueue::PrepFetchBatch(io_uring_sqe* sqe, uint64_t user_data) {
  ublk::PrepFetchBatch(sqe, char_fd_, q_id_, kFetchGroup);
  io_uring_sqe_set_data64(sqe, user_data);
}

bool KernelUblkQueue::TakeFetched(const io_uring_cqe& cqe, std::vector<uint16_t>* tags) {
  if (fetch_ring_ == nullptr || (cqe.flags & IORING_CQE_F_BUFFER) == 0) return false;
  const uint16_t bid = static_cast<uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
  if (bid >= kFetchBuffers) return false;
  uint16_t* buf = fetch_space_.data() + bid * (kFetchBufferBytes / 2);
  const bool whole = cqe.res >= 0 && static_cast<uint32_t>(cqe.res) <= kFetchBufferBytes &&
                     cqe.res % sizeof(uint16_t) == 0;
  if (whole) tags->insert(tags->end(), buf, buf + cqe.res / sizeof(uint16_t));
  // The buffer goes back in any case: the kernel took it.
  io_uring_buf_ring_add(fetch_ring_, buf, kFetchBufferBytes, bid,
                        io_uring_buf_ring_mask(kFetchBuffers), 0);
  io_uring_buf_ring_advance(fetch_ring_, 1);
  return whole;
}

bool KernelUblkQueue::Fuse(io_uring_sqe* sqe, uint16_t tag, uint64_t slave_user_data) {
  return ublk::FuseOnRequest(sqe, char_fd_, q_id_, tag, slave_user_data);
}

}  // namespace ublkgw::engine
