// The blocking client against scripted servers: structured reads put back
// together, server errors reported without losing the connection, and
// every hostile reply rejected with its own error and the connection
// retired. Request rules are checked before anything is sent.
#include "nbd/blocking_client.h"

#include <cstring>
#include <string>
#include <vector>

#include "fake_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbd/protocol_error.h"
#include "testing/protocol_matchers.h"
#include "testing/status_matchers.h"

namespace ublkgw::nbd {
namespace {

using ::testing::HasSubstr;
using ::ublkgw::nbd::testing::FakePeer;
using ::ublkgw::nbd::testing::FakeServer;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::IsViolation;
using ::ublkgw::testing::StatusIs;

constexpr uint16_t kAllFlags = kFlagHasFlags | kFlagSendFlush | kFlagSendFua | kFlagSendTrim |
                               kFlagSendWriteZeroes;
constexpr uint64_t kSize = 1 << 20;

std::string Bytes(size_t n, char c) { return std::string(n, c); }
std::string DataChunk(uint64_t offset, const std::string& data) {
  return ByteWriter().Put(offset).PutBytes(data).Take();
}

// Connects a client to `script`, which starts after the handshake.
struct Connected {
  explicit Connected(std::function<void(FakePeer&)> script, uint16_t flags = kAllFlags,
                     bool structured = true, uint64_t size = kSize)
      : server([script = std::move(script), flags, structured, size](FakePeer& peer) {
          peer.AcceptGo(size, flags, structured);
          script(peer);
        }) {
    auto opened = BlockingClient::Open(server.TakeClientStream(), HandshakeOptions{});
    EXPECT_THAT(opened, IsOk());
    if (opened.ok()) client.emplace(*std::move(opened));
  }
  FakeServer server;
  std::optional<BlockingClient> client;
};

TEST(BlockingClientTest, ReadAssembledFromChunksInAnyOrder) {
  Connected c([](FakePeer& peer) {
    uint16_t type; uint64_t cookie, offset; uint32_t length;
    ASSERT_TRUE(peer.ReadRequest(&type, &cookie, &offset, &length));
    EXPECT_EQ(type, kCmdRead);
    EXPECT_EQ(offset, 4096u);
    EXPECT_EQ(length, 4096u);
    peer.Chunk(0, kReplyTypeOffsetData, cookie, DataChunk(4096 + 3072, Bytes(1024, 'c')));
    peer.Chunk(0, kReplyTypeOffsetHole, cookie,
               ByteWriter().Put(uint64_t{4096 + 1024}).Put(uint32_t{2048}).Take());
    peer.Chunk(kReplyFlagDone, kReplyTypeOffsetData, cookie, DataChunk(4096, Bytes(1024, 'a')));
  });
  std::vector<uint8_t> buf(4096, 0xee);
  ASSERT_THAT(c.client->Read(4096, buf), IsOk());
  EXPECT_EQ(std::string(buf.begin(), buf.begin() + 1024), Bytes(1024, 'a'));
  EXPECT_EQ(std::string(buf.begin() + 1024, buf.begin() + 3072), Bytes(2048, '\0'));
  EXPECT_EQ(std::string(buf.begin() + 3072, buf.end()), Bytes(1024, 'c'));
}

TEST(BlockingClientTest, SimpleRepliesWithoutStructuredReplies) {
  Connected c(
      [](FakePeer& peer) {
        uint16_t type; uint64_t cookie, offset; uint32_t length;
        ASSERT_TRUE(peer.ReadRequest(&type, &cookie, &offset, &length));
        std::string data;
        ASSERT_TRUE(peer.Read(length, &data));  // the write's payload
        EXPECT_EQ(data, Bytes(512, 'w'));
        peer.SimpleReply(0, cookie);
        ASSERT_TRUE(peer.ReadRequest(&type, &cookie, &offset, &length));
        peer.SimpleReply(0, cookie, Bytes(512, 'r'));
      },
      kAllFlags, /*structured=*/false);
  EXPECT_EQ(c.client->info().mode, HeaderMode::kSimple);
  std::string w = Bytes(512, 'w');
  ASSERT_THAT(c.client->Write(0, AsBytes(w)), IsOk());
  std::vector<uint8_t> buf(512);
  ASSERT_THAT(c.client->Read(0, buf), IsOk());
  EXPECT_EQ(std::string(buf.begin(), buf.end()), Bytes(512, 'r'));
}

TEST(BlockingClientTest, ServerErrorsKeepTheConnection) {
  Connected c([](FakePeer& peer) {
    uint16_t type; uint64_t cookie, offset; uint32_t length;
    ASSERT_TRUE(peer.ReadRequest(&type, &cookie, &offset, &length));
    const std::string msg = "bad sector";
    peer.Chunk(kReplyFlagDone, kReplyTypeError, cookie,
               ByteWriter().Put(kEIo).Put(uint16_t(msg.size())).PutBytes(msg).Take());
    ASSERT_TRUE(peer.ReadRequest(&type, &cookie, &offset, &length));
    EXPECT_EQ(type, kCmdFlush);
    peer.SimpleReply(kENoSpc, cookie);
    ASSERT_TRUE(peer.ReadRequest(&type, &cookie, &offset, &length));
    peer.Chunk(kReplyFlagDone, kReplyTypeNone, cookie, "");
  });
  std::vector<uint8_t> buf(512);
  EXPECT_THAT(c.client->Read(0, buf),
              StatusIs(absl::StatusCode::kUnknown, HasSubstr("server says: bad sector")));
  EXPECT_THAT(c.client->Flush(), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(c.client->Trim(0, 4096), IsOk());
}

// Hostile replies to a 4 KiB read at offset 0: each is its own violation,
// and the connection is not used again.
struct Hostile {
  const char* name;
  std::function<void(FakePeer&, uint64_t cookie)> reply;
  ProtocolError want;
};

class HostileReplyTest : public ::testing::TestWithParam<Hostile> {};

TEST_P(HostileReplyTest, IsRejectedAndTheConnectionRetired) {
  Connected c([](FakePeer& peer) {
    uint16_t type; uint64_t cookie, offset; uint32_t length;
    if (peer.ReadRequest(&type, &cookie, &offset, &length)) GetParam().reply(peer, cookie);
  });
  std::vector<uint8_t> buf(4096);
  EXPECT_THAT(c.client->Read(0, buf), IsViolation(GetParam().want));
  EXPECT_THAT(c.client->Read(0, buf),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("connect again")));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, HostileReplyTest,
    ::testing::Values(
        Hostile{"WrongMagic",
                [](FakePeer& p, uint64_t) { p.Write(Bytes(32, 'x')); },
                ProtocolError::kBadMagic},
        Hostile{"UnknownCookie",
                [](FakePeer& p, uint64_t cookie) { p.SimpleReply(0, cookie + 1000); },
                ProtocolError::kUnknownCookie},
        Hostile{"SimpleReplyToStructuredRead",
                [](FakePeer& p, uint64_t cookie) { p.SimpleReply(0, cookie, Bytes(4096, 'x')); },
                ProtocolError::kUnexpectedChunk},
        Hostile{"OversizedData",
                [](FakePeer& p, uint64_t cookie) {
                  p.Chunk(kReplyFlagDone, kReplyTypeOffsetData, cookie, DataChunk(0, Bytes(8192, 'x')));
                },
                ProtocolError::kOversizedLength},
        Hostile{"DataOutsideTheRead",
                [](FakePeer& p, uint64_t cookie) {
                  p.Chunk(kReplyFlagDone, kReplyTypeOffsetData, cookie, DataChunk(8192, Bytes(512, 'x')));
                },
                ProtocolError::kChunkOutOfRange},
        Hostile{"OverlappingChunks",
                [](FakePeer& p, uint64_t cookie) {
                  p.Chunk(0, kReplyTypeOffsetData, cookie, DataChunk(0, Bytes(2048, 'x')));
                  p.Chunk(kReplyFlagDone, kReplyTypeOffsetData, cookie, DataChunk(1024, Bytes(3072, 'y')));
                },
                ProtocolError::kChunkOverlap},
        Hostile{"DoneBeforeAllData",
                [](FakePeer& p, uint64_t cookie) {
                  p.Chunk(kReplyFlagDone, kReplyTypeOffsetData, cookie, DataChunk(0, Bytes(2048, 'x')));
                },
                ProtocolError::kIncompleteRead},
        Hostile{"ErrorChunkWithoutMessageLength",
                [](FakePeer& p, uint64_t cookie) {
                  p.Chunk(kReplyFlagDone, kReplyTypeError, cookie, ByteWriter().Put(kEIo).Take());
                },
                ProtocolError::kBadErrorChunk},
        Hostile{"ErrorOffsetOutsideTheRead",
                [](FakePeer& p, uint64_t cookie) {
                  p.Chunk(kReplyFlagDone, kReplyTypeErrorOffset, cookie,
                          ByteWriter().Put(kEIo).Put(uint16_t{0}).Put(uint64_t{1 << 19}).Take());
                },
                ProtocolError::kChunkOutOfRange}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(BlockingClientTest, ServerClosingMidPayload) {
  Connected c([](FakePeer& peer) {
    uint16_t type; uint64_t cookie, offset; uint32_t length;
    ASSERT_TRUE(peer.ReadRequest(&type, &cookie, &offset, &length));
    // Promise 4096 bytes, send 100, hang up.
    peer.Write(ByteWriter().Put(kStructuredReplyMagic).Put(kReplyFlagDone).Put(kReplyTypeOffsetData)
                   .Put(cookie).Put(uint32_t{8 + 4096}).Put(uint64_t{0}).PutBytes(Bytes(100, 'x')).Take());
  });
  std::vector<uint8_t> buf(4096);
  EXPECT_THAT(c.client->Read(0, buf),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("closed the connection")));
  EXPECT_THAT(c.client->Read(0, buf), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(BlockingClientTest, RulesAreCheckedBeforeSending) {
  // The server answers exactly one request: a valid read after the refused ones.
  Connected c(
      [](FakePeer& peer) {
        uint16_t type; uint64_t cookie, offset; uint32_t length;
        ASSERT_TRUE(peer.ReadRequest(&type, &cookie, &offset, &length));
        EXPECT_EQ(type, kCmdRead);
        peer.Chunk(kReplyFlagDone, kReplyTypeOffsetHole, cookie,
                   ByteWriter().Put(offset).Put(length).Take());
      },
      kFlagHasFlags | kFlagReadOnly);
  std::vector<uint8_t> buf(512);
  std::string data = Bytes(512, 'x');
  EXPECT_THAT(c.client->Write(0, AsBytes(data)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("read-only")));
  EXPECT_THAT(c.client->Flush(), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("FLUSH")));
  EXPECT_THAT(c.client->Read(kSize, buf),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("past the end")));
  std::vector<uint8_t> odd(100);
  EXPECT_THAT(c.client->Read(0, odd),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not aligned")));
  EXPECT_THAT(c.client->Read(0, buf), IsOk());
}

TEST(BlockingClientTest, TrimAndZeroStayBelowTwoGiB) {
  Connected c([](FakePeer&) {}, kAllFlags, true, /*size=*/8ULL << 30);
  EXPECT_THAT(c.client->Trim(0, 1ULL << 31),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds the limit")));
  EXPECT_THAT(c.client->WriteZeroes(1ULL << 32, 1ULL << 31),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds the limit")));
}

}  // namespace
}  // namespace ublkgw::nbd
