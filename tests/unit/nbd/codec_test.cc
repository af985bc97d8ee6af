#include "nbd/codec.h"

#include <algorithm>
#include <array>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbd/bytes.h"
#include "nbd/protocol_error.h"
#include "nbd/wire.h"
#include "testing/protocol_matchers.h"
#include "testing/status_matchers.h"

namespace ublkgw::nbd {
namespace {

using ::testing::HasSubstr;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::IsOkAndHolds;
using ::ublkgw::testing::IsViolation;
using ::ublkgw::testing::StatusIs;

Request Read(uint64_t offset, uint64_t length, uint64_t cookie = 7) {
  return Request{kCmdRead, 0, cookie, offset, length};
}

std::string SimpleReply(uint32_t error, uint64_t cookie) {
  return ByteWriter().Put(kSimpleReplyMagic).Put(error).Put(cookie).Take();
}
std::string ChunkHeader(uint16_t flags, uint16_t type, uint64_t cookie, uint32_t length) {
  return ByteWriter().Put(kStructuredReplyMagic).Put(flags).Put(type).Put(cookie).Put(length).Take();
}
std::string ExtChunkHeader(uint16_t flags, uint16_t type, uint64_t cookie, uint64_t length) {
  return ByteWriter()
      .Put(kExtendedReplyMagic).Put(flags).Put(type).Put(cookie).Put(uint64_t{0}).Put(length)
      .Take();
}

ReplyHeader Header(const std::string& bytes, HeaderMode mode) {
  auto h = DecodeReplyHeader(AsBytes(bytes), mode);
  EXPECT_THAT(h, IsOk());
  return h.ok() ? *h : ReplyHeader{};
}

// --- requests ---------------------------------------------------------------

TEST(CodecTest, CompactRequestLayout) {
  std::array<uint8_t, 32> buf{};
  auto n = EncodeRequest({kCmdWrite, kCmdFlagFua, 0x0102030405060708, 4096, 512},
                         HeaderMode::kStructured, buf);
  ASSERT_THAT(n, IsOk());
  EXPECT_EQ(*n, 28u);
  ByteReader r({buf.data(), *n});
  EXPECT_EQ(r.Get<uint32_t>(), kRequestMagic);
  EXPECT_EQ(r.Get<uint16_t>(), kCmdFlagFua);
  EXPECT_EQ(r.Get<uint16_t>(), kCmdWrite);
  EXPECT_EQ(r.Get<uint64_t>(), 0x0102030405060708u);
  EXPECT_EQ(r.Get<uint64_t>(), 4096u);
  EXPECT_EQ(r.Get<uint32_t>(), 512u);
}

TEST(CodecTest, ExtendedRequestLayout) {
  std::array<uint8_t, 32> buf{};
  auto n = EncodeRequest({kCmdTrim, 0, 9, 1ULL << 40, 5ULL << 32}, HeaderMode::kExtended, buf);
  ASSERT_THAT(n, IsOk());
  EXPECT_EQ(*n, 32u);
  EXPECT_EQ(LoadBe<uint32_t>(buf.data()), kExtendedRequestMagic);
  EXPECT_EQ(LoadBe<uint64_t>(buf.data() + 16), 1ULL << 40);
  EXPECT_EQ(LoadBe<uint64_t>(buf.data() + 24), 5ULL << 32);
}

TEST(CodecTest, RequestErrors) {
  std::array<uint8_t, 27> small{};
  EXPECT_THAT(EncodeRequest(Read(0, 1), HeaderMode::kSimple, small),
              StatusIs(absl::StatusCode::kInvalidArgument));
  std::array<uint8_t, 32> buf{};
  EXPECT_THAT(EncodeRequest(Read(0, 1ULL << 32), HeaderMode::kStructured, buf),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("compact")));
}

// --- reply headers ------------------------------------------------------------

TEST(CodecTest, SimpleReply) {
  const std::string bytes = SimpleReply(kEIo, 42);
  ASSERT_THAT(ReplyHeaderSize(LoadBe<uint32_t>(AsBytes(bytes).data()), HeaderMode::kSimple),
              IsOkAndHolds(16u));
  ReplyHeader h = Header(bytes, HeaderMode::kSimple);
  EXPECT_FALSE(h.structured);
  EXPECT_TRUE(h.done());
  EXPECT_EQ(h.error, kEIo);
  EXPECT_EQ(h.cookie, 42u);
}

TEST(CodecTest, StructuredAndExtendedHeaders) {
  ReplyHeader h = Header(ChunkHeader(kReplyFlagDone, kReplyTypeOffsetData, 5, 4104),
                         HeaderMode::kStructured);
  EXPECT_TRUE(h.structured);
  EXPECT_TRUE(h.done());
  EXPECT_EQ(h.type, kReplyTypeOffsetData);
  EXPECT_EQ(h.length, 4104u);
  ReplyHeader e = Header(ExtChunkHeader(0, kReplyTypeOffsetHole, 6, 12), HeaderMode::kExtended);
  EXPECT_FALSE(e.done());
  EXPECT_EQ(e.cookie, 6u);
  EXPECT_EQ(e.length, 12u);
}

TEST(CodecTest, WrongMagicForTheMode) {
  EXPECT_THAT(ReplyHeaderSize(0xdeadbeef, HeaderMode::kStructured),
              IsViolation(ProtocolError::kBadMagic));
  EXPECT_THAT(ReplyHeaderSize(kStructuredReplyMagic, HeaderMode::kSimple),
              IsViolation(ProtocolError::kBadMagic));
  EXPECT_THAT(ReplyHeaderSize(kSimpleReplyMagic, HeaderMode::kExtended),
              IsViolation(ProtocolError::kBadMagic));
  EXPECT_THAT(DecodeReplyHeader(AsBytes(SimpleReply(0, 1)), HeaderMode::kExtended),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("0x67446698")));
}

TEST(CodecTest, TruncatedHeader) {
  std::string bytes = SimpleReply(0, 1);
  bytes.pop_back();
  EXPECT_THAT(DecodeReplyHeader(AsBytes(bytes), HeaderMode::kSimple),
              IsViolation(ProtocolError::kTruncated));
  EXPECT_THAT(DecodeReplyHeader(AsBytes(bytes.substr(0, 3)), HeaderMode::kSimple),
              IsViolation(ProtocolError::kTruncated));
}

// --- chunks ---------------------------------------------------------------------

TEST(CodecTest, DataChunkInsideTheRead) {
  const Request req = Read(8192, 8192);
  ReplyHeader h = Header(ChunkHeader(0, kReplyTypeOffsetData, 7, 8 + 4096), HeaderMode::kStructured);
  ASSERT_THAT(ChunkPrefixSize(h, req, HeaderMode::kStructured), IsOkAndHolds(8u));
  auto c = DecodeChunk(h, AsBytes(ByteWriter().Put(uint64_t{12288}).Take()), req,
                       HeaderMode::kStructured);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->kind, Chunk::Kind::kData);
  EXPECT_EQ(c->offset, 12288u);
  EXPECT_EQ(c->length, 4096u);
}

TEST(CodecTest, HoleChunkCompactAndExtended) {
  const Request req = Read(0, 65536);
  ReplyHeader h = Header(ChunkHeader(kReplyFlagDone, kReplyTypeOffsetHole, 7, 12),
                         HeaderMode::kStructured);
  auto c = DecodeChunk(h, AsBytes(ByteWriter().Put(uint64_t{4096}).Put(uint32_t{8192}).Take()), req,
                       HeaderMode::kStructured);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->kind, Chunk::Kind::kHole);
  EXPECT_EQ(c->offset, 4096u);
  EXPECT_EQ(c->length, 8192u);

  // The hole size stays 32 bits with extended headers.
  ReplyHeader e = Header(ExtChunkHeader(0, kReplyTypeOffsetHole, 7, 12), HeaderMode::kExtended);
  auto ce = DecodeChunk(e, AsBytes(ByteWriter().Put(uint64_t{0}).Put(uint32_t{65536}).Take()), req,
                        HeaderMode::kExtended);
  ASSERT_THAT(ce, IsOk());
  EXPECT_EQ(ce->length, 65536u);
}

TEST(CodecTest, ErrorChunks) {
  const Request req = Read(0, 4096);
  const std::string msg = "disk on fire";
  ReplyHeader h = Header(ChunkHeader(kReplyFlagDone, kReplyTypeError, 7, 6 + msg.size()),
                         HeaderMode::kStructured);
  auto c = DecodeChunk(h, AsBytes(ByteWriter().Put(kEIo).Put(uint16_t(msg.size())).Take()), req,
                       HeaderMode::kStructured);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->kind, Chunk::Kind::kError);
  EXPECT_EQ(c->error, kEIo);
  EXPECT_EQ(c->message_length, msg.size());
  EXPECT_EQ(c->trailer_length, 0u);

  // An empty message is allowed.
  ReplyHeader empty = Header(ChunkHeader(kReplyFlagDone, kReplyTypeError, 7, 6), HeaderMode::kStructured);
  EXPECT_THAT(DecodeChunk(empty, AsBytes(ByteWriter().Put(kEInval).Put(uint16_t{0}).Take()), req,
                          HeaderMode::kStructured),
              IsOk());

  // ERROR_OFFSET: the offset follows the message and must lie in the read.
  ReplyHeader off = Header(ChunkHeader(0, kReplyTypeErrorOffset, 7, 6 + 2 + 8), HeaderMode::kStructured);
  auto co = DecodeChunk(off, AsBytes(ByteWriter().Put(kEIo).Put(uint16_t{2}).Take()), req,
                        HeaderMode::kStructured);
  ASSERT_THAT(co, IsOk());
  EXPECT_EQ(co->trailer_length, 8u);
  EXPECT_THAT(CheckErrorOffset(AsBytes(ByteWriter().Put(uint64_t{4095}).Take()), req), IsOk());
  EXPECT_THAT(CheckErrorOffset(AsBytes(ByteWriter().Put(uint64_t{4096}).Take()), req),
              IsViolation(ProtocolError::kChunkOutOfRange));

  // An error type this client does not know is still an error.
  ReplyHeader unknown = Header(ChunkHeader(kReplyFlagDone, 0x8077, 7, 6 + 3 + 5), HeaderMode::kStructured);
  auto cu = DecodeChunk(unknown, AsBytes(ByteWriter().Put(kENoSpc).Put(uint16_t{3}).Take()), req,
                        HeaderMode::kStructured);
  ASSERT_THAT(cu, IsOk());
  EXPECT_EQ(cu->kind, Chunk::Kind::kError);
  EXPECT_EQ(cu->trailer_length, 5u);
}

TEST(CodecTest, NoneChunkEndsAReply) {
  const Request flush{kCmdFlush, 0, 3, 0, 0};
  ReplyHeader h = Header(ChunkHeader(kReplyFlagDone, kReplyTypeNone, 3, 0), HeaderMode::kStructured);
  auto c = DecodeChunk(h, {}, flush, HeaderMode::kStructured);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->kind, Chunk::Kind::kNone);
}

// --- hostile chunks: each with its own error --------------------------------------

struct HostileChunk {
  const char* name;
  uint16_t flags;
  uint16_t type;
  uint32_t length;
  std::string prefix;
  Request request;
  ProtocolError want;
};

class HostileChunkTest : public ::testing::TestWithParam<HostileChunk> {};

TEST_P(HostileChunkTest, IsRejected) {
  const HostileChunk& t = GetParam();
  ReplyHeader h = Header(ChunkHeader(t.flags, t.type, 7, t.length), HeaderMode::kStructured);
  auto prefix_size = ChunkPrefixSize(h, t.request, HeaderMode::kStructured);
  if (!prefix_size.ok()) {
    EXPECT_THAT(prefix_size, IsViolation(t.want));
    return;
  }
  EXPECT_THAT(DecodeChunk(h, AsBytes(t.prefix), t.request, HeaderMode::kStructured),
              IsViolation(t.want));
}

const Request kRead4k = Read(4096, 4096);
const Request kWrite{kCmdWrite, 0, 7, 0, 4096};

INSTANTIATE_TEST_SUITE_P(
    Cases, HostileChunkTest,
    ::testing::Values(
        HostileChunk{"DataBeforeRead", 0, kReplyTypeOffsetData, 8 + 512,
                     ByteWriter().Put(uint64_t{0}).Take(), kRead4k, ProtocolError::kChunkOutOfRange},
        HostileChunk{"DataPastRead", 0, kReplyTypeOffsetData, 8 + 512,
                     ByteWriter().Put(uint64_t{8192 - 256}).Take(), kRead4k,
                     ProtocolError::kChunkOutOfRange},
        HostileChunk{"DataOffsetWraps", 0, kReplyTypeOffsetData, 8 + 512,
                     ByteWriter().Put(~uint64_t{0} - 100).Take(), kRead4k,
                     ProtocolError::kChunkOutOfRange},
        HostileChunk{"DataLongerThanRead", 0, kReplyTypeOffsetData, 8 + 8192, "", kRead4k,
                     ProtocolError::kOversizedLength},
        HostileChunk{"DataWithoutData", 0, kReplyTypeOffsetData, 8, "", kRead4k,
                     ProtocolError::kTruncated},
        HostileChunk{"DataForAWrite", 0, kReplyTypeOffsetData, 8 + 512, "", kWrite,
                     ProtocolError::kUnexpectedChunk},
        HostileChunk{"HoleTooShort", 0, kReplyTypeOffsetHole, 10, "", kRead4k,
                     ProtocolError::kTruncated},
        HostileChunk{"HoleTooLong", 0, kReplyTypeOffsetHole, 20, "", kRead4k,
                     ProtocolError::kOversizedLength},
        HostileChunk{"HolePastRead", 0, kReplyTypeOffsetHole, 12,
                     ByteWriter().Put(uint64_t{4096}).Put(uint32_t{8192}).Take(), kRead4k,
                     ProtocolError::kChunkOutOfRange},
        HostileChunk{"EmptyHole", 0, kReplyTypeOffsetHole, 12,
                     ByteWriter().Put(uint64_t{4096}).Put(uint32_t{0}).Take(), kRead4k,
                     ProtocolError::kChunkOutOfRange},
        HostileChunk{"ErrorChunkWithoutMessageLength", kReplyFlagDone, kReplyTypeError, 4, "",
                     kRead4k, ProtocolError::kBadErrorChunk},
        HostileChunk{"ErrorZero", kReplyFlagDone, kReplyTypeError, 6,
                     ByteWriter().Put(uint32_t{0}).Put(uint16_t{0}).Take(), kRead4k,
                     ProtocolError::kBadErrorChunk},
        HostileChunk{"ErrorMessageLongerThanChunk", kReplyFlagDone, kReplyTypeError, 6 + 4,
                     ByteWriter().Put(kEIo).Put(uint16_t{100}).Take(), kRead4k,
                     ProtocolError::kBadErrorChunk},
        HostileChunk{"ErrorWithTrailingBytes", kReplyFlagDone, kReplyTypeError, 6 + 4,
                     ByteWriter().Put(kEIo).Put(uint16_t{2}).Take(), kRead4k,
                     ProtocolError::kBadErrorChunk},
        HostileChunk{"ErrorOffsetWithoutOffset", kReplyFlagDone, kReplyTypeErrorOffset, 6 + 8,
                     ByteWriter().Put(kEIo).Put(uint16_t{4}).Take(), kRead4k,
                     ProtocolError::kBadErrorChunk},
        HostileChunk{"HugeErrorChunk", kReplyFlagDone, kReplyTypeError, 1 << 20, "", kRead4k,
                     ProtocolError::kOversizedLength},
        HostileChunk{"NoneWithoutDone", 0, kReplyTypeNone, 0, "", kWrite,
                     ProtocolError::kUnexpectedChunk},
        HostileChunk{"NoneWithPayload", kReplyFlagDone, kReplyTypeNone, 4, "", kWrite,
                     ProtocolError::kOversizedLength},
        HostileChunk{"BlockStatusNeverAsked", kReplyFlagDone, kReplyTypeBlockStatus, 12, "",
                     kRead4k, ProtocolError::kUnexpectedChunk},
        HostileChunk{"UnknownNonErrorType", kReplyFlagDone, 77, 0, "", kRead4k,
                     ProtocolError::kUnexpectedChunk}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(CodecTest, SimpleReplyToAReadOnlyWithoutStructuredReplies) {
  const ReplyHeader simple = Header(SimpleReply(kEInval, 7), HeaderMode::kStructured);
  EXPECT_THAT(CheckSimpleReply(simple, kRead4k, HeaderMode::kSimple), IsOk());
  EXPECT_THAT(CheckSimpleReply(simple, kWrite, HeaderMode::kStructured), IsOk());
  EXPECT_THAT(CheckSimpleReply(simple, kRead4k, HeaderMode::kStructured),
              IsViolation(ProtocolError::kUnexpectedChunk));
}

TEST(CodecTest, PrefixOfTheWrongSizeIsTruncated) {
  ReplyHeader h = Header(ChunkHeader(0, kReplyTypeOffsetData, 7, 8 + 512), HeaderMode::kStructured);
  EXPECT_THAT(DecodeChunk(h, AsBytes("1234"), kRead4k, HeaderMode::kStructured),
              IsViolation(ProtocolError::kTruncated));
}

// --- read coverage ------------------------------------------------------------------

TEST(ReadCoverageTest, ChunksInAnyOrderCoverTheRead) {
  ReadCoverage cov(4096);
  EXPECT_THAT(cov.Add(2048, 2048), IsOk());
  EXPECT_FALSE(cov.complete());
  EXPECT_THAT(cov.Add(0, 1024), IsOk());
  EXPECT_THAT(cov.Add(1024, 1024), IsOk());
  EXPECT_TRUE(cov.complete());
}

TEST(ReadCoverageTest, OverlapsAreRejected) {
  ReadCoverage cov(8192);
  ASSERT_THAT(cov.Add(1024, 1024), IsOk());
  EXPECT_THAT(cov.Add(1024, 1024), IsViolation(ProtocolError::kChunkOverlap));
  EXPECT_THAT(cov.Add(0, 1025), IsViolation(ProtocolError::kChunkOverlap));
  EXPECT_THAT(cov.Add(2047, 10), IsViolation(ProtocolError::kChunkOverlap));
  EXPECT_THAT(cov.Add(512, 4096), IsViolation(ProtocolError::kChunkOverlap));
  EXPECT_THAT(cov.Add(2048, 10), IsOk());  // adjacent is fine
  EXPECT_THAT(cov.Add(0, 1024), IsOk());
  EXPECT_THAT(cov.Add(8000, 500), IsViolation(ProtocolError::kChunkOutOfRange));
  EXPECT_FALSE(cov.complete());
}

// A hostile server's read in one-byte chunks, last byte first: each chunk
// joins its neighbour, so one range is kept and the read completes.
TEST(ReadCoverageTest, TinyChunksInReverseMerge) {
  constexpr uint64_t kLength = 512 * 1024;
  ReadCoverage cov(kLength);
  for (uint64_t at = kLength; at-- > 0;) ASSERT_THAT(cov.Add(at, 1), IsOk()) << at;
  EXPECT_TRUE(cov.complete());
}

// Pieces that never touch are tracked up to a bound, then refused: memory
// and the cost of each Add stay bounded whatever the server sends.
TEST(ReadCoverageTest, TooManySeparatePiecesAreRefused) {
  ReadCoverage cov(1 << 20);
  for (uint64_t i = 0; i < ReadCoverage::kMaxFragments; ++i) {
    ASSERT_THAT(cov.Add((ReadCoverage::kMaxFragments - i) * 4, 1), IsOk()) << i;
  }
  EXPECT_THAT(cov.Add(1, 1), IsViolation(ProtocolError::kTooFragmented));
  // A piece that joins one already there still fits.
  EXPECT_THAT(cov.Add(5, 1), IsOk());
  EXPECT_FALSE(cov.complete());
}

// Against a model (a flag per byte): any pieces, in any order, are taken
// exactly when they touch no byte already there, and the read is complete
// exactly when every byte is. Covers the inline first range, its hand-over
// to the map at the first disjoint piece, and the map.
TEST(ReadCoverageTest, AgreesWithAByteMapForRandomPieces) {
  constexpr uint64_t kLength = 48;
  std::mt19937_64 rng(20261206);
  for (int round = 0; round < 2000; ++round) {
    ReadCoverage cov(kLength);
    std::vector<bool> have(kLength, false);
    for (int piece = 0; piece < 12; ++piece) {
      const uint64_t offset = rng() % kLength;
      const uint64_t length = 1 + rng() % std::min<uint64_t>(kLength - offset, 1 + rng() % 16);
      bool free = true;
      for (uint64_t i = offset; i < offset + length; ++i) free = free && !have[i];
      const absl::Status s = cov.Add(offset, length);
      if (free) {
        ASSERT_THAT(s, IsOk()) << "round " << round << " piece " << piece;
        for (uint64_t i = offset; i < offset + length; ++i) have[i] = true;
      } else {
        ASSERT_THAT(s, IsViolation(ProtocolError::kChunkOverlap))
            << "round " << round << " piece " << piece;
      }
      const bool all = std::all_of(have.begin(), have.end(), [](bool b) { return b; });
      ASSERT_EQ(cov.complete(), all) << "round " << round << " piece " << piece;
    }
  }
}

TEST(ReadCoverageTest, PiecesBridgingAGapMerge) {
  ReadCoverage cov(3000);
  ASSERT_THAT(cov.Add(0, 1000), IsOk());
  ASSERT_THAT(cov.Add(2000, 1000), IsOk());
  EXPECT_THAT(cov.Add(999, 2), IsViolation(ProtocolError::kChunkOverlap));
  EXPECT_THAT(cov.Add(1999, 2), IsViolation(ProtocolError::kChunkOverlap));
  ASSERT_THAT(cov.Add(1000, 1000), IsOk());
  EXPECT_TRUE(cov.complete());
  EXPECT_THAT(cov.Add(0, 1), IsViolation(ProtocolError::kChunkOverlap));
}

}  // namespace
}  // namespace ublkgw::nbd
