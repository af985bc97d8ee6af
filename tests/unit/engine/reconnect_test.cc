// A queue reconnects with capped, jittered backoff, and only to an export
// that can still serve the device it backs.
#include "engine/reconnect.h"

#include "engine/request_mapping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbd/wire.h"
#include "testing/status_matchers.h"

namespace ublkgw::engine {
namespace {

using ::testing::HasSubstr;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::StatusIs;

TEST(BackoffDelayTest, DoublesUpToTheCapWithEqualJitter) {
  ReconnectPolicy p;
  p.backoff_min = absl::Milliseconds(100);
  p.backoff_max = absl::Seconds(1);
  EXPECT_EQ(BackoffDelay(p, 1, 0.0), absl::Milliseconds(50));
  EXPECT_EQ(BackoffDelay(p, 1, 1.0), absl::Milliseconds(100));
  EXPECT_EQ(BackoffDelay(p, 2, 1.0), absl::Milliseconds(200));
  EXPECT_EQ(BackoffDelay(p, 4, 1.0), absl::Milliseconds(800));
  EXPECT_EQ(BackoffDelay(p, 5, 1.0), absl::Seconds(1));     // capped
  EXPECT_EQ(BackoffDelay(p, 1000, 0.5), absl::Milliseconds(750));  // no overflow
  EXPECT_EQ(BackoffDelay(p, 5, 7.0), absl::Seconds(1));     // a bad draw is clamped
}

nbd::ExportInfo Export() {
  nbd::ExportInfo e;
  e.size = 1 << 30;
  e.flags = nbd::kFlagHasFlags | nbd::kFlagSendFlush | nbd::kFlagSendFua | nbd::kFlagSendTrim |
            nbd::kFlagCanMultiConn;
  e.mode = nbd::HeaderMode::kStructured;
  e.max_payload = 32 << 20;
  return e;
}

DeviceShape Shape() {
  DeviceShape d;
  d.size = 1 << 30;
  d.queues = 2;
  d.max_io_bytes = 512 * 1024;
  return d;
}

TEST(CheckReconnectedExportTest, TheSameExportOrABiggerOneIsFine) {
  EXPECT_THAT(CheckReconnectedExport(Export(), Export(), Shape()), IsOk());
  nbd::ExportInfo bigger = Export();
  bigger.size *= 2;
  bigger.flags |= nbd::kFlagSendWriteZeroes;  // more offered is fine
  EXPECT_THAT(CheckReconnectedExport(Export(), bigger, Shape()), IsOk());
}

TEST(CheckReconnectedExportTest, EachIncompatibleChangeIsNamed) {
  auto refused = [](nbd::ExportInfo now, DeviceShape shape, const char* why) {
    EXPECT_THAT(CheckReconnectedExport(Export(), now, shape),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(why)))
        << why;
  };
  nbd::ExportInfo e = Export();
  e.size -= 4096;
  refused(e, Shape(), "1073737728 bytes");
  e = Export();
  e.flags |= nbd::kFlagReadOnly;
  refused(e, Shape(), "read-only");
  e.flags &= ~nbd::kFlagSendFlush;
  e.flags &= ~nbd::kFlagReadOnly;
  refused(e, Shape(), "FLUSH");
  e = Export();
  e.flags &= ~nbd::kFlagCanMultiConn;
  refused(e, Shape(), "CAN_MULTI_CONN");
  e = Export();
  e.mode = nbd::HeaderMode::kSimple;
  refused(e, Shape(), "reply format");
  e = Export();
  e.min_block = 4096;
  refused(e, Shape(), "minimum block");
  e = Export();
  e.max_payload = 64 * 1024;
  refused(e, Shape(), "maximum payload");
}

TEST(CheckReconnectedExportTest, WhatTheDeviceNeverUsesMayChange) {
  nbd::ExportInfo e = Export();
  e.flags |= nbd::kFlagReadOnly;
  e.flags &= ~nbd::kFlagCanMultiConn;
  DeviceShape shape = Shape();
  shape.read_only = true;
  shape.queues = 1;
  shape.size = 4096;  // shrunk by a resize
  e.size = 8192;
  EXPECT_THAT(CheckReconnectedExport(Export(), e, shape), IsOk());
}

// A daemon taking over a device its predecessor left reads what the device
// needs from the kernel's parameters: exactly what the export gave it.
// A server whose maximum payload is below a page: the buffers are a page,
// but the device never sends more than the payload, so a new connection to
// the same server still serves it (the shape check compared page-rounded
// sizes, and every reconnect was refused).
TEST(ShapeOfParamsTest, AServerWithASmallMaximumPayloadCanReconnect) {
  nbd::ExportInfo info;
  info.size = 1 << 20;
  info.flags = nbd::kFlagHasFlags | nbd::kFlagSendFlush;
  info.block_sizes_from_server = true;
  info.min_block = 512;
  info.preferred_block = 512;
  info.max_payload = 1024;
  const uint32_t buffers = IoBufferBytes(info, 4096, 512 * 1024);
  EXPECT_EQ(buffers, 4096u);
  auto params = ParamsForExport(info, buffers, false);
  ASSERT_THAT(params, IsOk());
  const DeviceShape shape = ShapeOfParams(*params, 1);
  EXPECT_EQ(shape.max_io_bytes, 1024u);
  EXPECT_EQ(shape.size, info.size);
  EXPECT_THAT(CheckReconnectedExport(info, info, shape), IsOk());
  info.max_payload = 512;
  EXPECT_THAT(CheckReconnectedExport(info, info, shape),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("maximum payload")));
}

TEST(NeedsOfDeviceTest, ReadsBackWhatTheExportGaveTheDevice) {
  nbd::ExportInfo e = Export();
  e.flags |= nbd::kFlagSendWriteZeroes;
  e.min_block = 4096;
  auto params = ParamsForExport(e, 512 * 1024, /*read_only=*/false);
  ASSERT_THAT(params, IsOk());
  ublk::ublksrv_ctrl_dev_info dev{};
  dev.nr_hw_queues = 2;
  const DeviceNeeds needs = NeedsOfDevice(dev, *params);
  EXPECT_EQ(needs.shape.size, e.size);
  EXPECT_EQ(needs.shape.queues, 2);
  EXPECT_EQ(needs.shape.max_io_bytes, 512u * 1024);
  EXPECT_FALSE(needs.shape.read_only);
  EXPECT_EQ(needs.needed.min_block, 4096u);
  for (uint16_t flag : {nbd::kFlagSendFlush, nbd::kFlagSendFua, nbd::kFlagSendTrim,
                        nbd::kFlagSendWriteZeroes}) {
    EXPECT_TRUE(needs.needed.can(flag)) << flag;
  }
  // The same export serves it; one without FUA or WRITE_ZEROES does not.
  nbd::ExportInfo needed = needs.needed;
  needed.mode = e.mode;
  EXPECT_THAT(CheckReconnectedExport(needed, e, needs.shape), IsOk());
  nbd::ExportInfo less = e;
  less.flags &= ~nbd::kFlagSendFua;
  EXPECT_THAT(CheckReconnectedExport(needed, less, needs.shape),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("FUA")));
  less = e;
  less.flags &= ~nbd::kFlagSendWriteZeroes;
  EXPECT_THAT(CheckReconnectedExport(needed, less, needs.shape),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("WRITE_ZEROES")));
}

TEST(NeedsOfDeviceTest, AReadOnlyDeviceWithoutCacheNeedsNoWriteCommands) {
  nbd::ExportInfo e = Export();
  e.flags = nbd::kFlagHasFlags | nbd::kFlagReadOnly;
  auto params = ParamsForExport(e, 128 * 1024, /*read_only=*/true);
  ASSERT_THAT(params, IsOk());
  ublk::ublksrv_ctrl_dev_info dev{};
  dev.nr_hw_queues = 1;
  const DeviceNeeds needs = NeedsOfDevice(dev, *params);
  EXPECT_TRUE(needs.shape.read_only);
  EXPECT_EQ(needs.needed.flags, 0);
  EXPECT_EQ(needs.needed.min_block, 512u);
  EXPECT_EQ(needs.shape.max_io_bytes, 128u * 1024);
}

}  // namespace
}  // namespace ublkgw::engine
