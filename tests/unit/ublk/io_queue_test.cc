// The fused command's SQE, byte for byte as the patched kernel reads it:
// the master (UBLK_U_IO_FUSED_SUBMIT_IO for q_id/tag) in the first 64
// bytes, the slave op in the second, and who carries what. And the
// batched commands' SQEs (UBLK_F_BATCH_IO), as 7.2's driver and io_uring
// check them.
#include "ublk/io_queue.h"

#include <liburing.h>
#include <sys/socket.h>

#include <cstring>

#include "gtest/gtest.h"

namespace ublkgw::ublk {
namespace {

constexpr int kCharFd = 7;
constexpr int kSocket = 9;
constexpr uint64_t kOpData = 0x0300000000000005;
constexpr uint64_t kSlaveData = 0x0800000000000005;

ublksrv_io_cmd CmdOf(const io_uring_sqe& sqe) {
  ublksrv_io_cmd cmd{};
  std::memcpy(&cmd, sqe.cmd, sizeof(cmd));
  return cmd;
}

class FuseTest : public ::testing::Test {
 protected:
  void SetUp() override { std::memset(sqes_, 0xa5, sizeof(sqes_)); }  // stale bytes
  io_uring_sqe sqes_[2];
};

TEST_F(FuseTest, ARecvIntoTheRequestBecomesTheSlaveOfItsMaster) {
  io_uring_prep_recv(&sqes_[0], kSocket, reinterpret_cast<void*>(512), 4096, MSG_WAITALL);
  sqes_[0].ioprio |= IORING_RECVSEND_FIXED_BUF;
  sqes_[0].buf_index = 5;
  sqes_[0].flags = IOSQE_IO_LINK;
  io_uring_sqe_set_data64(&sqes_[0], kOpData);
  ASSERT_TRUE(FuseOnRequest(sqes_, kCharFd, /*q_id=*/2, /*tag=*/5, kSlaveData));

  const io_uring_sqe& master = sqes_[0];
  EXPECT_EQ(master.opcode, kIoringOpFusedCmd);
  EXPECT_EQ(master.fd, kCharFd);
  EXPECT_EQ(master.cmd_op, kIoFusedSubmitIo);
  EXPECT_EQ(master.flags, IOSQE_IO_LINK);  // the chain goes on after the master
  EXPECT_EQ(master.user_data, kOpData);    // its completion is the op's
  EXPECT_EQ(master.uring_cmd_flags, 0u);   // the kernel refuses any
  const ublksrv_io_cmd cmd = CmdOf(master);
  EXPECT_EQ(cmd.q_id, 2);
  EXPECT_EQ(cmd.tag, 5);
  EXPECT_EQ(cmd.addr, 0u);

  const io_uring_sqe& slave = sqes_[1];
  EXPECT_EQ(slave.opcode, IORING_OP_RECV);
  EXPECT_EQ(slave.fd, kSocket);
  EXPECT_EQ(slave.addr, 512u);  // an offset in the request's buffer
  EXPECT_EQ(slave.len, 4096u);
  EXPECT_EQ(slave.msg_flags, static_cast<uint32_t>(MSG_WAITALL));
  EXPECT_EQ(slave.flags, IOSQE_CQE_SKIP_SUCCESS);  // the master carries its result
  EXPECT_EQ(slave.buf_index, 0);
  EXPECT_NE(slave.ioprio & IORING_RECVSEND_FIXED_BUF, 0);
  EXPECT_EQ(slave.user_data, kSlaveData);
}

TEST_F(FuseTest, FileOpsOnAFixedBufferRunAsPlainReadAndWrite) {
  io_uring_prep_read_fixed(&sqes_[0], kSocket, reinterpret_cast<void*>(0), 8192, 0, 3);
  ASSERT_TRUE(FuseOnRequest(sqes_, kCharFd, 0, 3, kSlaveData));
  EXPECT_EQ(sqes_[1].opcode, IORING_OP_READ);
  EXPECT_EQ(sqes_[1].buf_index, 0);
  EXPECT_EQ(sqes_[0].flags, 0);

  io_uring_prep_write_fixed(&sqes_[0], kSocket, reinterpret_cast<void*>(4096), 4096, 0, 3);
  sqes_[0].flags = IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
  ASSERT_TRUE(FuseOnRequest(sqes_, kCharFd, 0, 3, kSlaveData));
  EXPECT_EQ(sqes_[1].opcode, IORING_OP_WRITE);
  EXPECT_EQ(sqes_[1].addr, 4096u);
  // The fixed file is the slave's (its fd); the link the master's.
  EXPECT_EQ(sqes_[1].flags, IOSQE_FIXED_FILE | IOSQE_CQE_SKIP_SUCCESS);
  EXPECT_EQ(sqes_[0].flags, IOSQE_IO_HARDLINK);
}

TEST_F(FuseTest, ASendZcSlavePostsItsOwnCompletions) {
  // The kernel refuses IOSQE_CQE_SKIP_SUCCESS on SEND_ZC.
  io_uring_prep_send_zc_fixed(&sqes_[0], kSocket, reinterpret_cast<void*>(0), 65536,
                              MSG_NOSIGNAL, 0, 1);
  ASSERT_TRUE(FuseOnRequest(sqes_, kCharFd, 0, 1, kSlaveData));
  EXPECT_EQ(sqes_[1].opcode, IORING_OP_SEND_ZC);
  EXPECT_EQ(sqes_[1].flags, 0);
  EXPECT_EQ(sqes_[1].user_data, kSlaveData);
}

TEST_F(FuseTest, OpsThatCannotBeSlavesAreLeftAlone) {
  io_uring_prep_send(&sqes_[0], kSocket, reinterpret_cast<void*>(0), 100, 0);  // user memory
  io_uring_sqe before[2];
  std::memcpy(before, sqes_, sizeof(before));
  EXPECT_FALSE(FuseOnRequest(sqes_, kCharFd, 0, 1, kSlaveData));
  EXPECT_EQ(std::memcmp(before, sqes_, sizeof(before)), 0);
  io_uring_prep_nop(&sqes_[0]);
  EXPECT_FALSE(FuseOnRequest(sqes_, kCharFd, 0, 1, kSlaveData));
  EXPECT_EQ(sqes_[0].opcode, IORING_OP_NOP);
}

ublk_batch_io BatchOf(const io_uring_sqe& sqe) {
  ublk_batch_io cmd{};
  std::memcpy(&cmd, sqe.cmd, sizeof(cmd));
  return cmd;
}

// PREP_IO_CMDS / COMMIT_IO_CMDS: the elements by address and length, the
// header in the command area; nothing left of a stale SQE.
TEST(BatchSqeTest, CommitNamesItsElementsAndTheirShape) {
  io_uring_sqe sqe;
  std::memset(&sqe, 0xa5, sizeof(sqe));
  uint8_t elems[3 * 16] = {};
  PrepBatchCmd(&sqe, kCharFd, kIoCommitIoCmds, 2, kBatchFHasBufAddr, elems, 3, 16);
  EXPECT_EQ(sqe.opcode, IORING_OP_URING_CMD);
  EXPECT_EQ(sqe.fd, kCharFd);
  EXPECT_EQ(sqe.cmd_op, kIoCommitIoCmds);
  EXPECT_EQ(sqe.addr, reinterpret_cast<uintptr_t>(elems));
  EXPECT_EQ(sqe.len, 48u);
  EXPECT_EQ(sqe.flags, 0);
  EXPECT_EQ(sqe.uring_cmd_flags, 0u);
  const ublk_batch_io cmd = BatchOf(sqe);
  EXPECT_EQ(cmd.q_id, 2);
  EXPECT_EQ(cmd.flags, kBatchFHasBufAddr);
  EXPECT_EQ(cmd.nr_elem, 3);
  EXPECT_EQ(cmd.elem_bytes, 16);
  EXPECT_EQ(cmd.reserved, 0);
  EXPECT_EQ(cmd.reserved2, 0u);
}

// FETCH_IO_CMDS: multishot, selecting its buffers from group `buf_group`
// (the field the driver reads as sqe->buf_index), 2-byte tags, no flags:
// what ublk_validate_batch_fetch_cmd and io_uring_cmd_buffer_select ask.
TEST(BatchSqeTest, FetchIsMultishotAndSelectsItsBuffers) {
  io_uring_sqe sqe;
  std::memset(&sqe, 0xa5, sizeof(sqe));
  PrepFetchBatch(&sqe, kCharFd, 1, 0);
  EXPECT_EQ(sqe.opcode, IORING_OP_URING_CMD);
  EXPECT_EQ(sqe.fd, kCharFd);
  EXPECT_EQ(sqe.cmd_op, kIoFetchIoCmds);
  EXPECT_EQ(sqe.uring_cmd_flags, kUringCmdMultishot);
  EXPECT_EQ(sqe.flags, IOSQE_BUFFER_SELECT);
  EXPECT_EQ(sqe.buf_group, 0);
  EXPECT_EQ(sqe.addr, 0u);
  EXPECT_EQ(sqe.len, 0u);
  const ublk_batch_io cmd = BatchOf(sqe);
  EXPECT_EQ(cmd.q_id, 1);
  EXPECT_EQ(cmd.flags, 0);
  EXPECT_EQ(cmd.elem_bytes, sizeof(uint16_t));
  EXPECT_EQ(cmd.nr_elem, 0);
}

}  // namespace
}  // namespace ublkgw::ublk
