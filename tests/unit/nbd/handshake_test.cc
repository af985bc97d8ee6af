#include "nbd/handshake.h"

#include <string>

#include "fake_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbd/protocol_error.h"
#include "testing/protocol_matchers.h"
#include "testing/status_matchers.h"

namespace ublkgw::nbd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::ublkgw::nbd::testing::FakePeer;
using ::ublkgw::nbd::testing::FakeServer;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::IsViolation;
using ::ublkgw::testing::StatusIs;

absl::StatusOr<ExportInfo> NegotiateWith(FakeServer::Script script, std::string name = "disk",
                                         absl::Duration timeout = absl::Seconds(5)) {
  FakeServer server(std::move(script));
  Stream stream = server.TakeClientStream(timeout);
  HandshakeOptions options;
  options.export_name = std::move(name);
  return Negotiate(stream, options);
}

TEST(HandshakeTest, GoWithStructuredRepliesAndBlockSizes) {
  uint32_t client_flags = 0;
  std::string go_data;
  auto info = NegotiateWith([&](FakePeer& peer) {
    client_flags = peer.Greet();
    EXPECT_EQ(peer.ReadOption(), kOptExtendedHeaders);
    peer.Reply(kOptExtendedHeaders, kRepErrUnsup);
    EXPECT_EQ(peer.ReadOption(), kOptStructuredReply);
    peer.Reply(kOptStructuredReply, kRepAck);
    EXPECT_EQ(peer.ReadOption(&go_data), kOptGo);
    peer.Reply(kOptGo, kRepInfo, ByteWriter().Put(kInfoName).PutBytes("canonical").Take());
    peer.Reply(kOptGo, kRepInfo, ByteWriter().Put(uint16_t{99}).PutBytes("ignored").Take());
    peer.InfoBlockSize(512, 4096, 1 << 20);
    peer.InfoExport(1 << 30, kFlagHasFlags | kFlagSendFlush | kFlagSendFua);
    peer.Reply(kOptGo, kRepAck);
  });
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(client_flags, kFlagCFixedNewstyle | kFlagCNoZeroes);
  // name length, name, 4 info requests
  EXPECT_EQ(go_data, ByteWriter()
                         .Put(uint32_t{4}).PutBytes("disk").Put(uint16_t{4})
                         .Put(kInfoExport).Put(kInfoName).Put(kInfoDescription).Put(kInfoBlockSize)
                         .Take());
  EXPECT_EQ(info->mode, HeaderMode::kStructured);
  EXPECT_EQ(info->size, 1u << 30);
  EXPECT_TRUE(info->can(kFlagSendFua));
  EXPECT_FALSE(info->read_only());
  EXPECT_EQ(info->canonical_name, "canonical");
  EXPECT_TRUE(info->block_sizes_from_server);
  EXPECT_EQ(info->min_block, 512u);
  EXPECT_EQ(info->max_payload, 1u << 20);
  EXPECT_TRUE(info->used_opt_go);
}

TEST(HandshakeTest, ExtendedHeadersSkipStructuredReplyOption) {
  auto info = NegotiateWith([](FakePeer& peer) {
    peer.Greet();
    EXPECT_EQ(peer.ReadOption(), kOptExtendedHeaders);
    peer.Reply(kOptExtendedHeaders, kRepAck);
    EXPECT_EQ(peer.ReadOption(), kOptGo);  // not STRUCTURED_REPLY
    peer.InfoExport(4096, kFlagHasFlags | kFlagReadOnly);
    peer.Reply(kOptGo, kRepAck);
  });
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->mode, HeaderMode::kExtended);
  EXPECT_TRUE(info->read_only());
  EXPECT_FALSE(info->block_sizes_from_server);
  EXPECT_EQ(info->min_block, 512u);  // the interoperable default
}

TEST(HandshakeTest, FallsBackToExportNameWhenGoIsUnknown) {
  std::string name;
  auto info = NegotiateWith([&](FakePeer& peer) {
    peer.Greet(kFlagFixedNewstyle);  // no NO_ZEROES: 124 zero bytes follow
    peer.ReadOption();
    peer.Reply(kOptExtendedHeaders, kRepErrUnsup);
    peer.ReadOption();
    peer.Reply(kOptStructuredReply, kRepErrUnsup);
    EXPECT_EQ(peer.ReadOption(), kOptGo);
    peer.Reply(kOptGo, kRepErrUnsup);
    EXPECT_EQ(peer.ReadOption(&name), kOptExportName);
    peer.Write(ByteWriter().Put(uint64_t{8192}).Put(uint16_t(kFlagHasFlags | kFlagSendTrim))
                   .PutBytes(std::string(124, '\0')).Take());
  });
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(name, "disk");
  EXPECT_FALSE(info->used_opt_go);
  EXPECT_EQ(info->mode, HeaderMode::kSimple);
  EXPECT_EQ(info->size, 8192u);
  EXPECT_TRUE(info->can(kFlagSendTrim));
}

TEST(HandshakeTest, ExportNameRefusedByClosing) {
  EXPECT_THAT(NegotiateWith([](FakePeer& peer) {
                peer.Greet(0);  // plain newstyle: only EXPORT_NAME
                peer.ReadOption();
              }),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no export named 'disk'")));
}

// Greets, refuses extended headers, accepts structured replies, and reads
// NBD_OPT_GO: the script then answers it.
void HandshakeUpToGo(FakePeer& peer) {
  peer.Greet();
  peer.ReadOption();
  peer.Reply(kOptExtendedHeaders, kRepErrUnsup);
  peer.ReadOption();
  peer.Reply(kOptStructuredReply, kRepAck);
  peer.ReadOption();
}

struct Refusal {
  const char* name;
  uint32_t reply;
  absl::StatusCode code;
  const char* says;
};

class RefusalTest : public ::testing::TestWithParam<Refusal> {};

TEST_P(RefusalTest, GoRefusalNamesTheCause) {
  auto info = NegotiateWith([](FakePeer& peer) {
    HandshakeUpToGo(peer);
    peer.Reply(kOptGo, GetParam().reply, "go away\n");
  });
  EXPECT_THAT(info, StatusIs(GetParam().code, HasSubstr(GetParam().says)));
  EXPECT_THAT(info, StatusIs(GetParam().code, HasSubstr("server says: go away?")));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RefusalTest,
    ::testing::Values(
        Refusal{"Unknown", kRepErrUnknown, absl::StatusCode::kNotFound, "no export named 'disk'"},
        Refusal{"TlsRequired", kRepErrTlsReqd, absl::StatusCode::kFailedPrecondition, "requires TLS"},
        Refusal{"Policy", kRepErrPolicy, absl::StatusCode::kPermissionDenied, "by policy"},
        Refusal{"Invalid", kRepErrInvalid, absl::StatusCode::kInvalidArgument, "invalid"},
        Refusal{"Platform", kRepErrPlatform, absl::StatusCode::kUnimplemented, "platform"},
        Refusal{"Shutdown", kRepErrShutdown, absl::StatusCode::kUnavailable, "shutting down"},
        Refusal{"BlockSize", kRepErrBlockSizeReqd, absl::StatusCode::kFailedPrecondition,
                "block size"},
        Refusal{"TooBig", kRepErrTooBig, absl::StatusCode::kInvalidArgument, "too big"},
        Refusal{"Unlisted", kRepFlagError | 77, absl::StatusCode::kUnknown, "0x8000004d"}),
    [](const auto& info) { return std::string(info.param.name); });

// --- a broken or hostile server ------------------------------------------------

TEST(HandshakeTest, NotAnNbdServer) {
  EXPECT_THAT(NegotiateWith([](FakePeer& peer) { peer.Write("HTTP/1.1 400 Bad Request\r\n\r\n"); }),
              IsViolation(ProtocolError::kBadHandshake));
}

TEST(HandshakeTest, OldstyleServer) {
  EXPECT_THAT(NegotiateWith([](FakePeer& peer) {
                peer.Write(ByteWriter().Put(kInitMagic).Put(kOldstyleMagic).Put(uint16_t{0}).Take());
              }),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("oldstyle")));
}

TEST(HandshakeTest, ReplyForAnotherOption) {
  EXPECT_THAT(NegotiateWith([](FakePeer& peer) {
                peer.Greet();
                peer.ReadOption();
                peer.Reply(kOptList, kRepAck);
              }),
              IsViolation(ProtocolError::kBadHandshake));
}

TEST(HandshakeTest, ReplyWithWrongMagic) {
  EXPECT_THAT(NegotiateWith([](FakePeer& peer) {
                peer.Greet();
                peer.ReadOption();
                peer.Write(ByteWriter().Put(uint64_t{1}).Put(kOptExtendedHeaders).Put(kRepAck)
                               .Put(uint32_t{0}).Take());
              }),
              IsViolation(ProtocolError::kBadHandshake));
}

TEST(HandshakeTest, OversizedOptionReply) {
  EXPECT_THAT(NegotiateWith([](FakePeer& peer) {
                peer.Greet();
                peer.ReadOption();
                peer.Write(ByteWriter().Put(kOptReplyMagic).Put(kOptExtendedHeaders)
                               .Put(kRepErrUnsup).Put(uint32_t{1} << 30).Take());
              }),
              IsViolation(ProtocolError::kOversizedLength));
}

TEST(HandshakeTest, ImpossibleBlockSizes) {
  for (auto [min, pref, max] : {std::tuple{3u, 4096u, 1u << 20}, {512u, 256u, 1u << 20},
                                {512u, 4096u, 1000u}, {1u << 17, 1u << 17, 1u << 20}}) {
    EXPECT_THAT(NegotiateWith([&, min = min, pref = pref, max = max](FakePeer& peer) {
                  HandshakeUpToGo(peer);
                  peer.InfoBlockSize(min, pref, max);
                  peer.InfoExport(1 << 20, kFlagHasFlags);
                  peer.Reply(kOptGo, kRepAck);
                }),
                IsViolation(ProtocolError::kBadHandshake))
        << min << " " << pref << " " << max;
  }
}

TEST(HandshakeTest, GoAckWithoutExportInfo) {
  EXPECT_THAT(NegotiateWith([](FakePeer& peer) {
                HandshakeUpToGo(peer);
                peer.Reply(kOptGo, kRepAck);
              }),
              IsViolation(ProtocolError::kBadHandshake));
}

TEST(HandshakeTest, ExportInfoOfTheWrongLength) {
  EXPECT_THAT(NegotiateWith([](FakePeer& peer) {
                HandshakeUpToGo(peer);
                peer.Reply(kOptGo, kRepInfo, ByteWriter().Put(kInfoExport).Put(uint64_t{1}).Take());
              }),
              IsViolation(ProtocolError::kBadHandshake));
}

TEST(HandshakeTest, ServerClosesDuringTheGreeting) {
  EXPECT_THAT(NegotiateWith([](FakePeer& peer) { peer.Write("NBDMA"); }),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("closed the connection")));
}

TEST(HandshakeTest, SilentServerTimesOut) {
  EXPECT_THAT(NegotiateWith([](FakePeer& peer) {
                std::string ignored;
                peer.Read(1, &ignored);  // until the client gives up
              },
                            "disk", absl::Milliseconds(100)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("sent nothing")));
}

TEST(HandshakeTest, ListsExportsThenAborts) {
  FakeServer server([](FakePeer& peer) {
    peer.Greet();
    EXPECT_EQ(peer.ReadOption(), kOptList);
    peer.Reply(kOptList, kRepServer, ByteWriter().Put(uint32_t{2}).PutBytes("a1").PutBytes("first").Take());
    peer.Reply(kOptList, kRepServer, ByteWriter().Put(uint32_t{0}).Take());
    peer.Reply(kOptList, kRepAck);
    EXPECT_EQ(peer.ReadOption(), kOptAbort);
    peer.Reply(kOptAbort, kRepAck);
  });
  Stream stream = server.TakeClientStream();
  auto exports = ListExports(stream);
  ASSERT_THAT(exports, IsOk());
  ASSERT_EQ(exports->size(), 2u);
  EXPECT_EQ((*exports)[0].name, "a1");
  EXPECT_EQ((*exports)[0].description, "first");
  EXPECT_EQ((*exports)[1].name, "");
}

TEST(HandshakeTest, ListEntryWithImpossibleNameLength) {
  FakeServer server([](FakePeer& peer) {
    peer.Greet();
    peer.ReadOption();
    peer.Reply(kOptList, kRepServer, ByteWriter().Put(uint32_t{100}).PutBytes("abc").Take());
  });
  Stream stream = server.TakeClientStream();
  EXPECT_THAT(ListExports(stream), IsViolation(ProtocolError::kBadHandshake));
}

TEST(HandshakeTest, FlagNames) {
  EXPECT_THAT(TransmissionFlagNames(kFlagHasFlags | kFlagReadOnly | kFlagCanMultiConn | (1 << 14)),
              ElementsAre("HAS_FLAGS", "READ_ONLY", "CAN_MULTI_CONN", "BIT_14"));
}

}  // namespace
}  // namespace ublkgw::nbd
