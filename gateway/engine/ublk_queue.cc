#include "engine/ublk_queue.h"

namespace ublkgw::engine {

absl::Status KernelUblkQueue::Open(io_uring* /*ring*/) {
  auto descs = ublk::IoDescMap::Map(char_fd_, q_id_, depth_);
  if (!descs.ok()) return descs.status();
  descs_.emplace(*std::move(descs));
  return absl::OkStatus();
}

void KernelUblkQueue::Prep(io_uring_sqe* sqe, uint32_t cmd_op, uint16_t tag, int32_t result,
                           uint64_t addr, uint64_t user_data) {
  ublk::PrepIoCmd(sqe, char_fd_, cmd_op, q_id_, tag, result, addr);
  io_uring_sqe_set_data64(sqe, user_data);
}

bool KernelUblkQueue::Fuse(io_uring_sqe* sqe, uint16_t tag, uint64_t slave_user_data) {
  return ublk::FuseOnRequest(sqe, char_fd_, q_id_, tag, slave_user_data);
}

}  // namespace ublkgw::engine
