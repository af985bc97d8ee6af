// Checks our own ublk ABI definitions against independent encodings: the
// system's <linux/ioctl.h> macros, and literal values as a kernel sees them.
#include "ublk/uapi.h"

#include <linux/ioctl.h>

#include <cstring>

#include "gtest/gtest.h"

namespace ublkgw::ublk {
namespace {

TEST(UapiTest, ControlCommandsMatchTheSystemIoctlMacros) {
  using Cmd = ublksrv_ctrl_cmd;
  EXPECT_EQ(kCmdGetQueueAffinity, _IOR('u', 0x01, Cmd));
  EXPECT_EQ(kCmdGetDevInfo, _IOR('u', 0x02, Cmd));
  EXPECT_EQ(kCmdAddDev, _IOWR('u', 0x04, Cmd));
  EXPECT_EQ(kCmdDelDev, _IOWR('u', 0x05, Cmd));
  EXPECT_EQ(kCmdStartDev, _IOWR('u', 0x06, Cmd));
  EXPECT_EQ(kCmdStopDev, _IOWR('u', 0x07, Cmd));
  EXPECT_EQ(kCmdSetParams, _IOWR('u', 0x08, Cmd));
  EXPECT_EQ(kCmdGetParams, _IOR('u', 0x09, Cmd));
  EXPECT_EQ(kCmdStartUserRecovery, _IOWR('u', 0x10, Cmd));
  EXPECT_EQ(kCmdEndUserRecovery, _IOWR('u', 0x11, Cmd));
  EXPECT_EQ(kCmdGetDevInfo2, _IOR('u', 0x12, Cmd));
  EXPECT_EQ(kCmdGetFeatures, _IOR('u', 0x13, Cmd));
  EXPECT_EQ(kCmdDelDevAsync, _IOR('u', 0x14, Cmd));
  EXPECT_EQ(kCmdUpdateSize, _IOWR('u', 0x15, Cmd));
  EXPECT_EQ(kCmdQuiesceDev, _IOWR('u', 0x16, Cmd));
  EXPECT_EQ(kCmdTryStopDev, _IOWR('u', 0x17, Cmd));
  EXPECT_EQ(kCmdRegBuf, _IOWR('u', 0x18, Cmd));
  EXPECT_EQ(kCmdUnregBuf, _IOWR('u', 0x19, Cmd));
}

TEST(UapiTest, IoCommandsMatchTheSystemIoctlMacros) {
  EXPECT_EQ(kIoFetchReq, _IOWR('u', 0x20, ublksrv_io_cmd));
  EXPECT_EQ(kIoCommitAndFetchReq, _IOWR('u', 0x21, ublksrv_io_cmd));
  EXPECT_EQ(kIoNeedGetData, _IOWR('u', 0x22, ublksrv_io_cmd));
  EXPECT_EQ(kIoRegisterIoBuf, _IOWR('u', 0x23, ublksrv_io_cmd));
  // kernel/patches' numbers, apart from mainline's.
  EXPECT_EQ(kIoFusedSubmitIo, _IOWR('u', 0x70, ublksrv_io_cmd));
  EXPECT_EQ(kIoUnregisterIoBuf, _IOWR('u', 0x24, ublksrv_io_cmd));
  EXPECT_EQ(kIoPrepIoCmds, _IOWR('u', 0x25, ublk_batch_io));
  EXPECT_EQ(kIoCommitIoCmds, _IOWR('u', 0x26, ublk_batch_io));
  EXPECT_EQ(kIoFetchIoCmds, _IOWR('u', 0x27, ublk_batch_io));
}

TEST(UapiTest, LiteralCommandNumbers) {
  // The numbers strace shows for these commands on x86_64.
  EXPECT_EQ(kCmdGetFeatures, 0x80207513u);
  EXPECT_EQ(kCmdAddDev, 0xc0207504u);
  EXPECT_EQ(kCmdSetParams, 0xc0207508u);
  EXPECT_EQ(kIoFetchReq, 0xc0107520u);
  EXPECT_EQ(kIoCommitAndFetchReq, 0xc0107521u);
  EXPECT_EQ(IocNr(kCmdGetFeatures), 0x13u);
}

TEST(UapiTest, StructSizes) {
  EXPECT_EQ(sizeof(ublksrv_ctrl_cmd), 32u);
  EXPECT_EQ(sizeof(ublksrv_ctrl_dev_info), 64u);
  EXPECT_EQ(sizeof(ublksrv_io_desc), 24u);
  EXPECT_EQ(sizeof(ublksrv_io_cmd), 16u);
  EXPECT_EQ(sizeof(ublk_params), 152u);
}

TEST(UapiTest, IoDescOpAndFlags) {
  ublksrv_io_desc iod{};
  iod.op_flags = kIoOpWrite | kIoFFua;
  EXPECT_EQ(IodOp(iod), kIoOpWrite);
  EXPECT_EQ(IodFlags(iod), kIoFFua >> 8);
  iod.op_flags = kIoOpWriteZeroes | kIoFNoUnmap;
  EXPECT_EQ(IodOp(iod), kIoOpWriteZeroes);
  EXPECT_TRUE(iod.op_flags & kIoFNoUnmap);
}

TEST(UapiTest, AutoBufRegPacksIntoSqeAddr) {
  ublk_auto_buf_reg reg{};
  reg.index = 0x1234;
  reg.flags = kAutoBufRegFallback;
  EXPECT_EQ(AutoBufRegToSqeAddr(reg), 0x11234u);
  reg.reserved1 = 7;
  EXPECT_EQ(AutoBufRegToSqeAddr(reg), (7ULL << 32) | 0x11234u);
}

TEST(UapiTest, IoDescMmapOffsetStridesByMaxDepth) {
  constexpr uint64_t kPage = 4096;
  // 4096 descriptors of 24 bytes = 96 KiB per queue, whatever the depth.
  EXPECT_EQ(IoDescMmapOffset(0, kPage), 0u);
  EXPECT_EQ(IoDescMmapOffset(1, kPage), 4096u * 24u);
  EXPECT_EQ(IoDescMmapOffset(3, kPage), 3u * 4096u * 24u);
  EXPECT_EQ(IoDescArraySize(128, kPage), 4096u);  // 3072 bytes, one page
  EXPECT_EQ(IoDescArraySize(256, kPage), 8192u);  // 6144 bytes, two pages
}

TEST(UapiTest, UserCopyOffsetEncodesQueueTagAndOffset) {
  EXPECT_EQ(UserCopyOffset(0, 0, 0), 0x80000000u);
  EXPECT_EQ(UserCopyOffset(0, 1, 0), 0x80000000u + (1ULL << 25));
  EXPECT_EQ(UserCopyOffset(1, 0, 512), 0x80000000u + (1ULL << 41) + 512);
  // The fields do not overlap: each decodes back from the highest offset.
  const uint64_t top = UserCopyOffset(kMaxNrQueues - 1, 0xffff, (1u << 25) - 1) - kIoBufOffset;
  EXPECT_EQ(top >> kQidOff, kMaxNrQueues - 1);
  EXPECT_EQ((top >> kTagOff) & 0xffff, 0xffffu);
  EXPECT_EQ(top & ((1u << kIoBufBits) - 1), (1u << 25) - 1);
}

}  // namespace
}  // namespace ublkgw::ublk
