#include "engine/request_mapping.h"

#include <cerrno>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbd/wire.h"
#include "ublk/params_check.h"
#include "testing/status_matchers.h"

namespace ublkgw::engine {
namespace {

using ::testing::HasSubstr;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::StatusIs;

nbd::ExportInfo Export(uint16_t flags, uint64_t size = 1ULL << 30) {
  nbd::ExportInfo info;
  info.size = size;
  info.flags = nbd::kFlagHasFlags | flags;
  info.min_block = 512;
  info.preferred_block = 4096;
  info.max_payload = 32 << 20;
  return info;
}

ublk::ublksrv_io_desc Iod(uint8_t op, uint32_t flags, uint64_t sector, uint32_t sectors) {
  ublk::ublksrv_io_desc iod{};
  iod.op_flags = op | flags;
  iod.start_sector = sector;
  iod.nr_sectors = sectors;
  return iod;
}

constexpr uint16_t kAll = nbd::kFlagSendFlush | nbd::kFlagSendFua | nbd::kFlagSendTrim |
                          nbd::kFlagSendWriteZeroes;

TEST(CookieTest, TagIsRecoverableAndEachUseDiffers) {
  const uint64_t c = MakeCookie(7, 4095);
  EXPECT_EQ(c, (7ULL << 16) | 4095);
  EXPECT_EQ(CookieTag(c), 4095);
  EXPECT_NE(MakeCookie(8, 4095), c);
  // The use counter wraps within its 48 bits, never into the tag.
  EXPECT_EQ(CookieTag(MakeCookie(~uint64_t{0}, 12)), 12);
}

TEST(MapRequestTest, EachOperation) {
  const auto info = Export(kAll);
  auto read = MapRequest(Iod(ublk::kIoOpRead, 0, 8, 16), info);
  EXPECT_EQ(read.error, 0);
  EXPECT_EQ(read.request.type, nbd::kCmdRead);
  EXPECT_EQ(read.request.offset, 4096u);
  EXPECT_EQ(read.request.length, 8192u);

  auto write = MapRequest(Iod(ublk::kIoOpWrite, ublk::kIoFFua, 0, 8), info);
  EXPECT_EQ(write.request.type, nbd::kCmdWrite);
  EXPECT_EQ(write.request.flags, nbd::kCmdFlagFua);

  auto flush = MapRequest(Iod(ublk::kIoOpFlush, 0, 0, 0), info);
  EXPECT_EQ(flush.error, 0);
  EXPECT_EQ(flush.request.type, nbd::kCmdFlush);

  auto discard = MapRequest(Iod(ublk::kIoOpDiscard, 0, 0, 2048), info);
  EXPECT_EQ(discard.request.type, nbd::kCmdTrim);

  auto zeroes = MapRequest(Iod(ublk::kIoOpWriteZeroes, ublk::kIoFNoUnmap, 0, 2048), info);
  EXPECT_EQ(zeroes.request.type, nbd::kCmdWriteZeroes);
  EXPECT_EQ(zeroes.request.flags, nbd::kCmdFlagNoHole);
  auto zeroes_unmap = MapRequest(Iod(ublk::kIoOpWriteZeroes, 0, 0, 2048), info);
  EXPECT_EQ(zeroes_unmap.request.flags, 0);
}

TEST(MapRequestTest, WhatTheExportDoesNotOfferFailsWithoutSending) {
  const auto bare = Export(0);
  EXPECT_EQ(MapRequest(Iod(ublk::kIoOpFlush, 0, 0, 0), bare).error, -EOPNOTSUPP);
  EXPECT_EQ(MapRequest(Iod(ublk::kIoOpDiscard, 0, 0, 8), bare).error, -EOPNOTSUPP);
  EXPECT_EQ(MapRequest(Iod(ublk::kIoOpWrite, ublk::kIoFFua, 0, 8), bare).error, -EOPNOTSUPP);
  EXPECT_EQ(MapRequest(Iod(ublk::kIoOpWriteSame, 0, 0, 8), bare).error, -EOPNOTSUPP);
  EXPECT_EQ(MapRequest(Iod(ublk::kIoOpWrite, 0, 0, 8), Export(nbd::kFlagReadOnly)).error, -EROFS);
  EXPECT_EQ(MapRequest(Iod(ublk::kIoOpRead, 0, (1ULL << 30) >> 9, 8), bare).error, -EINVAL);
}

TEST(SuccessResultTest, BytesForReadsAndWritesOnly) {
  EXPECT_EQ(SuccessResult(Iod(ublk::kIoOpRead, 0, 0, 8)), 4096);
  EXPECT_EQ(SuccessResult(Iod(ublk::kIoOpWrite, 0, 0, 1)), 512);
  EXPECT_EQ(SuccessResult(Iod(ublk::kIoOpFlush, 0, 0, 0)), 0);
  EXPECT_EQ(SuccessResult(Iod(ublk::kIoOpDiscard, 0, 0, 8)), 0);
}

TEST(ParamsForExportTest, FullFeaturedExport) {
  auto p = ParamsForExport(Export(kAll | nbd::kFlagRotational), 512 * 1024, false);
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->basic.dev_sectors, (1ULL << 30) >> 9);
  EXPECT_EQ(p->basic.logical_bs_shift, 9);
  EXPECT_EQ(p->basic.physical_bs_shift, 12);
  EXPECT_EQ(p->basic.max_sectors, 1024u);  // 512 KiB buffers
  EXPECT_EQ(p->basic.attrs,
            ublk::kAttrVolatileCache | ublk::kAttrFua | ublk::kAttrRotational);
  EXPECT_TRUE(p->types & ublk::kParamTypeDiscard);
  EXPECT_LT(uint64_t{p->discard.max_discard_sectors} << 9, 1ULL << 31);
  EXPECT_LT(uint64_t{p->discard.max_write_zeroes_sectors} << 9, 1ULL << 31);
}

TEST(ParamsForExportTest, NoFlushMeansNoVolatileCacheAndFuaNeedsFlush) {
  auto none = ParamsForExport(Export(nbd::kFlagSendFua), 512 * 1024, false);
  ASSERT_THAT(none, IsOk());
  EXPECT_EQ(none->basic.attrs, 0u);
  EXPECT_FALSE(none->types & ublk::kParamTypeDiscard);
  auto flush_only = ParamsForExport(Export(nbd::kFlagSendFlush), 512 * 1024, false);
  EXPECT_EQ(flush_only->basic.attrs, ublk::kAttrVolatileCache);
}

TEST(ParamsForExportTest, ServerLimitsWin) {
  auto info = Export(kAll);
  info.min_block = 4096;
  info.max_payload = 64 * 1024;
  auto p = ParamsForExport(info, 512 * 1024, false);
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->basic.logical_bs_shift, 12);
  EXPECT_EQ(p->basic.max_sectors, 128u);
  EXPECT_EQ(p->discard.max_discard_sectors % 8, 0u);  // whole 4 KiB blocks
}

TEST(ParamsForExportTest, ReadOnlyFromEitherSide) {
  auto p = ParamsForExport(Export(nbd::kFlagReadOnly | kAll), 512 * 1024, false);
  EXPECT_TRUE(p->basic.attrs & ublk::kAttrReadOnly);
  EXPECT_FALSE(p->types & ublk::kParamTypeDiscard);
  auto q = ParamsForExport(Export(kAll), 512 * 1024, /*read_only=*/true);
  EXPECT_TRUE(q->basic.attrs & ublk::kAttrReadOnly);
}

// Whatever an export offers, the parameters are ones the kernel accepts
// (ublk::CheckParams, its rules): nbd-server's default export offers
// WRITE_ZEROES without TRIM, and a discard granularity of 0 was refused.
TEST(ParamsForExportTest, TheKernelAcceptsEveryCombinationOfFlags) {
  const uint16_t kFlags[] = {nbd::kFlagSendFlush, nbd::kFlagSendFua, nbd::kFlagSendTrim,
                             nbd::kFlagSendWriteZeroes, nbd::kFlagReadOnly,
                             nbd::kFlagRotational};
  struct Sizes {
    uint32_t min, preferred, max;
  };
  const Sizes kSizes[] = {{512, 4096, 32 << 20}, {1, 1, 1024}, {512, 512, 4096},
                          {4096, 4096, 64 << 10}, {4096, 65536, 1 << 20}, {1, 4096, 100000}};
  for (uint32_t mask = 0; mask < (1u << 6); ++mask) {
    uint16_t flags = 0;
    for (int i = 0; i < 6; ++i) {
      if (mask & (1u << i)) flags |= kFlags[i];
    }
    for (const Sizes& s : kSizes) {
      for (bool read_only : {false, true}) {
        auto info = Export(flags);
        info.min_block = s.min;
        info.preferred_block = s.preferred;
        info.max_payload = s.max;
        const uint32_t buffers = IoBufferBytes(info, 4096, 512 * 1024);
        auto p = ParamsForExport(info, buffers, read_only);
        ASSERT_THAT(p, IsOk());
        EXPECT_THAT(ublk::CheckParams(*p, buffers, 4096), IsOk())
            << "flags 0x" << std::hex << flags << std::dec << ", blocks " << s.min << "/"
            << s.preferred << "/" << s.max << (read_only ? ", read-only" : "");
        const bool trim = (flags & nbd::kFlagSendTrim) && !(p->basic.attrs & ublk::kAttrReadOnly);
        const bool zeroes =
            (flags & nbd::kFlagSendWriteZeroes) && !(p->basic.attrs & ublk::kAttrReadOnly);
        EXPECT_EQ(p->discard.max_discard_sectors > 0, trim);
        EXPECT_EQ(p->discard.max_write_zeroes_sectors > 0, zeroes);
        EXPECT_GT(p->basic.max_sectors, 0u);
      }
    }
  }
}

TEST(ParamsForExportTest, ExportsNoBlockDeviceCanPresent) {
  EXPECT_THAT(ParamsForExport(Export(0, 0), 512 * 1024, false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(ParamsForExport(Export(0, 1000), 512 * 1024, false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a multiple")));
  auto big_blocks = Export(0);
  big_blocks.min_block = 65536;
  EXPECT_THAT(ParamsForExport(big_blocks, 512 * 1024, false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 4096")));
}

}  // namespace
}  // namespace ublkgw::engine
