// The pure reply reader: replies and chunks reassembled whatever the
// byte splits, interleaved structured replies kept apart, and each hostile
// reply a fault with its own rule.
#include "engine/reply_reader.h"

#include <cerrno>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "engine/request_mapping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbd/bytes.h"
#include "nbd/protocol_error.h"
#include "nbd/wire.h"
#include "testing/protocol_matchers.h"

namespace ublkgw::engine {
namespace {

using nbd::ByteWriter;
using nbd::ProtocolError;
using ::ublkgw::testing::IsViolation;

std::string Simple(uint32_t error, uint64_t cookie, const std::string& data = "") {
  return ByteWriter().Put(nbd::kSimpleReplyMagic).Put(error).Put(cookie).PutBytes(data).Take();
}
std::string Chunk(uint16_t flags, uint16_t type, uint64_t cookie, const std::string& payload) {
  return ByteWriter()
      .Put(nbd::kStructuredReplyMagic)
      .Put(flags)
      .Put(type)
      .Put(cookie)
      .Put(static_cast<uint32_t>(payload.size()))
      .PutBytes(payload)
      .Take();
}
std::string ExtendedChunk(uint16_t flags, uint16_t type, uint64_t cookie,
                          const std::string& payload) {
  return ByteWriter()
      .Put(nbd::kExtendedReplyMagic)
      .Put(flags)
      .Put(type)
      .Put(cookie)
      .Put(uint64_t{0})  // the echoed offset, which the reader ignores
      .Put(static_cast<uint64_t>(payload.size()))
      .PutBytes(payload)
      .Take();
}
std::string Data(uint64_t offset, const std::string& bytes) {
  return ByteWriter().Put(offset).PutBytes(bytes).Take();
}
std::string Hole(uint64_t offset, uint32_t length) {
  return ByteWriter().Put(offset).Put(length).Take();
}
std::string Error(uint32_t error, const std::string& message, bool with_offset = false,
                  uint64_t offset = 0) {
  ByteWriter w;
  w.Put(error).Put(static_cast<uint16_t>(message.size())).PutBytes(message);
  if (with_offset) w.Put(offset);
  return w.Take();
}

// Requests in flight by tag; the cookie of tag T's current send is
// MakeCookie(use, T).
struct Flight {
  std::map<uint16_t, nbd::Request> requests;
  uint64_t Add(uint16_t tag, uint16_t type, uint64_t offset, uint64_t length, uint64_t use = 1) {
    nbd::Request r;
    r.type = type;
    r.offset = offset;
    r.length = length;
    r.cookie = MakeCookie(use, tag);
    requests[tag] = r;
    return r.cookie;
  }
  const nbd::Request* Find(uint64_t cookie) {
    auto it = requests.find(CookieTag(cookie));
    return it == requests.end() || it->second.cookie != cookie ? nullptr : &it->second;
  }
};

// What a stream did: each read's buffer, the replies done, the fault.
struct Outcome {
  std::map<uint16_t, std::string> buffers;
  std::vector<std::pair<uint16_t, int32_t>> done;
  absl::Status fault;
};

// Feeds `stream` in pieces of `piece` bytes (0: all at once).
Outcome Replay(nbd::HeaderMode mode, Flight& flight, const std::string& stream, size_t piece = 0) {
  ReplyReader reader(mode, 16);
  Outcome out;
  for (auto& [tag, r] : flight.requests) {
    if (r.type == nbd::kCmdRead) out.buffers[tag] = std::string(r.length, '?');
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(stream.data());
  size_t at = 0;
  while (at < stream.size() || reader.Want() == 0) {
    const size_t n = piece == 0 ? stream.size() - at : std::min(piece, stream.size() - at);
    std::span<const uint8_t> input(bytes + at, n);
    at += n;
    for (;;) {
      ReplyEvent e = reader.Feed(input, [&](uint64_t c) { return flight.Find(c); });
      input = input.subspan(e.consumed);
      if (e.kind == ReplyEvent::Kind::kNeedMore) break;
      if (e.kind == ReplyEvent::Kind::kFault) {
        out.fault = e.fault;
        return out;
      }
      if (e.kind == ReplyEvent::Kind::kData) {
        out.buffers[e.tag].replace(e.offset, e.bytes.size(),
                                   reinterpret_cast<const char*>(e.bytes.data()), e.bytes.size());
      } else if (e.kind == ReplyEvent::Kind::kHole) {
        out.buffers[e.tag].replace(e.offset, e.length, std::string(e.length, '\0'));
      } else if (e.kind == ReplyEvent::Kind::kDone) {
        out.done.emplace_back(e.tag, e.result);
        flight.requests.erase(e.tag);
      }
    }
    if (n == 0) break;
  }
  return out;
}

TEST(ReplyReaderTest, SimpleRepliesAtEverySplit) {
  for (size_t piece : {0, 1, 2, 3, 7, 15, 16, 17, 4096}) {
    Flight f;
    const uint64_t w = f.Add(1, nbd::kCmdWrite, 0, 4096);
    const uint64_t r = f.Add(2, nbd::kCmdRead, 4096, 1000);
    const uint64_t e = f.Add(3, nbd::kCmdRead, 0, 512);
    Outcome o = Replay(nbd::HeaderMode::kSimple, f,
                    Simple(0, r, std::string(1000, 'r')) + Simple(0, w) + Simple(28, e), piece);
    ASSERT_TRUE(o.fault.ok()) << piece << ": " << o.fault;
    EXPECT_EQ(o.buffers[2], std::string(1000, 'r')) << piece;
    EXPECT_THAT(o.done, ::testing::ElementsAre(std::pair<uint16_t, int32_t>{2, 0},
                                               std::pair<uint16_t, int32_t>{1, 0},
                                               std::pair<uint16_t, int32_t>{3, -ENOSPC}))
        << piece;
  }
}

TEST(ReplyReaderTest, InterleavedStructuredRepliesAtEverySplit) {
  for (size_t piece = 1; piece <= 40; ++piece) {
    Flight f;
    const uint64_t a = f.Add(4, nbd::kCmdRead, 8192, 2048);
    const uint64_t b = f.Add(5, nbd::kCmdRead, 0, 1024);
    const std::string stream =
        Chunk(0, nbd::kReplyTypeOffsetData, a, Data(8192 + 1024, std::string(1024, 'y'))) +
        Chunk(0, nbd::kReplyTypeOffsetHole, b, Hole(0, 512)) +
        Chunk(0, nbd::kReplyTypeOffsetData, a, Data(8192, std::string(1024, 'x'))) +
        Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeNone, a, "") +
        Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetData, b, Data(512, std::string(512, 'z')));
    Outcome o = Replay(nbd::HeaderMode::kStructured, f, stream, piece);
    ASSERT_TRUE(o.fault.ok()) << piece << ": " << o.fault;
    EXPECT_EQ(o.buffers[4], std::string(1024, 'x') + std::string(1024, 'y')) << piece;
    EXPECT_EQ(o.buffers[5], std::string(512, '\0') + std::string(512, 'z')) << piece;
    EXPECT_EQ(o.done.size(), 2u) << piece;
  }
}

// BetweenChunks says when the worker should acknowledge at once: some
// structured reply has had a chunk but not its last, and nothing of the
// next header has come. Never for simple replies or mid-header.
TEST(ReplyReaderTest, BetweenChunksWhileAStructuredReplyIsOpen) {
  Flight f;
  const uint64_t a = f.Add(4, nbd::kCmdRead, 8192, 2048);
  const uint64_t b = f.Add(5, nbd::kCmdRead, 0, 1024);
  const uint64_t w = f.Add(6, nbd::kCmdWrite, 0, 512);
  const std::string a_first =
      Chunk(0, nbd::kReplyTypeOffsetData, a, Data(8192, std::string(1024, 'x')));
  const std::pair<std::string, bool> steps[] = {
      {Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeNone, w, ""), false},  // one chunk, the last
      {a_first.substr(0, 10), false},                                   // mid-header
      {a_first.substr(10), true},                                       // a is open
      {Chunk(0, nbd::kReplyTypeOffsetHole, b, Hole(0, 512)), true},      // a and b
      {Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetData, a,
             Data(8192 + 1024, std::string(1024, 'y'))),
       true},  // b still open
      {Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetData, b, Data(512, std::string(512, 'z'))),
       false},
  };
  ReplyReader reader(nbd::HeaderMode::kStructured, 16);
  EXPECT_FALSE(reader.BetweenChunks());
  int step = 0;
  for (const auto& [bytes, between] : steps) {
    std::span<const uint8_t> input(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    for (;;) {
      ReplyEvent e = reader.Feed(input, [&](uint64_t c) { return f.Find(c); });
      ASSERT_NE(e.kind, ReplyEvent::Kind::kFault) << e.fault;
      input = input.subspan(e.consumed);
      if (e.kind == ReplyEvent::Kind::kNeedMore) break;
    }
    EXPECT_EQ(reader.BetweenChunks(), between) << "after step " << step++;
  }
  // A new connection forgets open replies.
  const uint64_t c = f.Add(7, nbd::kCmdRead, 0, 1024);
  const std::string open = Chunk(0, nbd::kReplyTypeOffsetHole, c, Hole(0, 512));
  std::span<const uint8_t> input(reinterpret_cast<const uint8_t*>(open.data()), open.size());
  while (reader.Feed(input, [&](uint64_t k) { return f.Find(k); }).kind !=
         ReplyEvent::Kind::kNeedMore) {
    input = {};
  }
  ASSERT_TRUE(reader.BetweenChunks());
  reader.Reset();
  EXPECT_FALSE(reader.BetweenChunks());

  ReplyReader simple(nbd::HeaderMode::kSimple, 16);
  const std::string reply = Simple(0, w);
  std::span<const uint8_t> in(reinterpret_cast<const uint8_t*>(reply.data()), reply.size());
  EXPECT_EQ(simple.Feed(in, [&](uint64_t k) { return f.Find(k); }).kind,
            ReplyEvent::Kind::kDone);
  EXPECT_FALSE(simple.BetweenChunks());
}

TEST(ReplyReaderTest, ErrorChunksKeepTheFirstErrorAndCheckTheirOffset) {
  Flight f;
  const uint64_t a = f.Add(1, nbd::kCmdRead, 4096, 4096);
  Outcome o = Replay(nbd::HeaderMode::kStructured, f,
                  Chunk(0, nbd::kReplyTypeErrorOffset, a, Error(12, "no memory", true, 4096 + 100)) +
                      Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeError, a, Error(5, "and more")),
                  3);
  ASSERT_TRUE(o.fault.ok()) << o.fault;
  ASSERT_EQ(o.done.size(), 1u);
  EXPECT_EQ(o.done[0].second, -ENOMEM);

  Flight g;
  const uint64_t b = g.Add(1, nbd::kCmdWrite, 4096, 4096);
  Outcome outside = Replay(nbd::HeaderMode::kStructured, g,
                        Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeErrorOffset, b,
                              Error(5, "", true, 8192)));
  EXPECT_THAT(outside.fault, IsViolation(ProtocolError::kChunkOutOfRange));
}

TEST(ReplyReaderTest, ShutdownIsAConnectionFault) {
  Flight f;
  const uint64_t a = f.Add(1, nbd::kCmdWrite, 0, 512);
  Outcome o = Replay(nbd::HeaderMode::kSimple, f, Simple(nbd::kEShutdown, a));
  EXPECT_TRUE(absl::IsUnavailable(o.fault)) << o.fault;
  EXPECT_TRUE(o.done.empty());
}

TEST(ReplyReaderTest, HostileRepliesAreFaults) {
  struct Case {
    const char* name;
    nbd::HeaderMode mode;
    std::string stream;
    ProtocolError error;
  };
  Flight base;
  const uint64_t r = base.Add(1, nbd::kCmdRead, 4096, 1024);
  const uint64_t stale = MakeCookie(0, 1);  // an earlier use of tag 1
  const Case cases[] = {
      {"earlier use of the tag", nbd::HeaderMode::kSimple, Simple(0, stale, std::string(1024, 'a')),
       ProtocolError::kUnknownCookie},
      {"bad magic", nbd::HeaderMode::kSimple, std::string(16, '\x01'), ProtocolError::kBadMagic},
      {"chunk outside the read", nbd::HeaderMode::kStructured,
       Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetData, r, Data(0, "abc")),
       ProtocolError::kChunkOutOfRange},
      {"overlap", nbd::HeaderMode::kStructured,
       Chunk(0, nbd::kReplyTypeOffsetData, r, Data(4096, std::string(600, 'a'))) +
           Chunk(0, nbd::kReplyTypeOffsetHole, r, Hole(4096 + 500, 524)),
       ProtocolError::kChunkOverlap},
      {"done before all came", nbd::HeaderMode::kStructured,
       Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetData, r, Data(4096, std::string(10, 'a'))),
       ProtocolError::kIncompleteRead},
      {"simple reply to a structured read", nbd::HeaderMode::kStructured,
       Simple(0, r, std::string(1024, 'a')), ProtocolError::kUnexpectedChunk},
  };
  for (const Case& c : cases) {
    Flight f = base;
    Outcome o = Replay(c.mode, f, c.stream);
    EXPECT_THAT(o.fault, IsViolation(c.error)) << c.name;
    EXPECT_TRUE(o.done.empty()) << c.name;
  }
}

TEST(ReplyReaderTest, PayloadCanBeReceivedElsewhere) {
  ReplyReader reader(nbd::HeaderMode::kStructured, 4);
  Flight f;
  const uint64_t r = f.Add(2, nbd::kCmdRead, 0, 4096);
  const std::string header =
      Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetData, r, Data(0, std::string(4096, 'p')))
          .substr(0, nbd::kStructuredReplySize + nbd::kDataChunkPrefixSize);
  EXPECT_EQ(reader.Want(), nbd::kSimpleReplySize);
  auto find = [&](uint64_t c) { return f.Find(c); };
  const auto* bytes = reinterpret_cast<const uint8_t*>(header.data());
  ReplyEvent e = reader.Feed({bytes, 16}, find);
  EXPECT_EQ(e.kind, ReplyEvent::Kind::kNeedMore);
  EXPECT_EQ(reader.Want(), 12u);  // the header's tail and the data's offset
  e = reader.Feed({bytes + 16, 12}, find);
  EXPECT_EQ(e.kind, ReplyEvent::Kind::kNeedMore);
  EXPECT_EQ(reader.PayloadLeft(), 4096u);
  EXPECT_EQ(reader.payload_tag(), 2);
  reader.SkipPayload(1000);
  EXPECT_EQ(reader.payload_offset(), 1000u);
  EXPECT_EQ(reader.Want(), 3096u);
  reader.SkipPayload(3096);
  e = reader.Feed({}, find);
  EXPECT_EQ(e.kind, ReplyEvent::Kind::kDone);
  EXPECT_EQ(e.tag, 2);
  EXPECT_EQ(e.result, 0);
}

// The zero-copy worker's promise: a caller that takes at most Want()
// bytes into staging, and a payload's bytes only through SkipPayload,
// never meets a read's data in staging, and ends up with what a caller
// that fed everything got. Random streams of every kind of reply, in every
// header mode, cut in random places.
TEST(ReplyReaderTest, WithinWantNoPayloadByteIsEverStaged) {
  std::mt19937 random(14);
  for (int round = 0; round < 300; ++round) {
    const auto mode = static_cast<nbd::HeaderMode>(round % 3);
    const auto chunk = [mode](uint16_t flags, uint16_t type, uint64_t cookie,
                              const std::string& payload) {
      return mode == nbd::HeaderMode::kExtended ? ExtendedChunk(flags, type, cookie, payload)
                                                : Chunk(flags, type, cookie, payload);
    };
    Flight f;
    std::string stream;
    for (uint16_t tag = 0; tag < 12; ++tag) {
      const bool read = random() % 2 == 0;
      const uint64_t offset = uint64_t{tag} * 8192;
      const uint32_t length = 512 * (1 + random() % 8);
      const uint64_t cookie =
          f.Add(tag, read ? nbd::kCmdRead : nbd::kCmdWrite, offset, length, 1 + random() % 5);
      const std::string data(length, static_cast<char>('a' + tag));
      const unsigned shape = random() % 4;
      if (mode == nbd::HeaderMode::kSimple) {
        stream += shape == 0 ? Simple(5, cookie) : Simple(0, cookie, read ? data : "");
      } else if (!read) {
        if (mode == nbd::HeaderMode::kStructured && shape < 2) {
          stream += Simple(shape == 0 ? 28 : 0, cookie);
        } else if (shape == 2) {
          stream += chunk(nbd::kReplyFlagDone, nbd::kReplyTypeNone, cookie, "");
        } else {
          stream += chunk(nbd::kReplyFlagDone, nbd::kReplyTypeError, cookie, Error(5, "oops"));
        }
      } else if (shape == 0) {
        stream += chunk(nbd::kReplyFlagDone, nbd::kReplyTypeError, cookie, Error(5, "oops"));
      } else if (shape == 1) {
        stream += chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetData, cookie, Data(offset, data));
      } else {
        const uint32_t half = length / 2;
        stream += chunk(0, nbd::kReplyTypeOffsetHole, cookie, Hole(offset + half, length - half));
        if (shape == 3) {
          stream += chunk(0, nbd::kReplyTypeErrorOffset, cookie, Error(12, "x", true, offset));
        }
        stream += chunk(0, nbd::kReplyTypeOffsetData, cookie, Data(offset, data.substr(0, half)));
        stream += chunk(nbd::kReplyFlagDone, nbd::kReplyTypeNone, cookie, "");
      }
    }
    Flight whole_flight = f;
    const Outcome expected = Replay(mode, whole_flight, stream);
    ASSERT_TRUE(expected.fault.ok()) << round << ": " << expected.fault;

    ReplyReader reader(mode, 16);
    Outcome got;
    for (auto& [tag, r] : f.requests) {
      if (r.type == nbd::kCmdRead) got.buffers[tag] = std::string(r.length, '?');
    }
    auto find = [&](uint64_t c) { return f.Find(c); };
    // Feeds `input`, all of which must be taken; false on a payload byte
    // or a fault.
    auto feed = [&](std::span<const uint8_t> input) {
      for (;;) {
        const ReplyEvent e = reader.Feed(input, find);
        input = input.subspan(e.consumed);
        switch (e.kind) {
          case ReplyEvent::Kind::kNeedMore:
            return input.empty();
          case ReplyEvent::Kind::kData:
          case ReplyEvent::Kind::kFault:
            ADD_FAILURE() << round << ": " << (e.fault.ok() ? "payload staged" : e.fault.ToString());
            return false;
          case ReplyEvent::Kind::kHole:
            got.buffers[e.tag].replace(e.offset, e.length, std::string(e.length, '\0'));
            break;
          case ReplyEvent::Kind::kDone:
            got.done.emplace_back(e.tag, e.result);
            f.requests.erase(e.tag);
            break;
        }
      }
    };
    size_t at = 0;
    bool ok = true;
    while (ok && at < stream.size()) {
      if (const uint64_t left = reader.PayloadLeft(); left > 0) {  // "straight into the pages"
        const size_t n = std::min<size_t>(left, 1 + random() % 700);
        got.buffers[reader.payload_tag()].replace(reader.payload_offset(), n, stream, at, n);
        reader.SkipPayload(n);
        at += n;
        ok = feed({});  // a reply may end with its payload
      } else {
        const size_t want = reader.Want();
        ASSERT_GT(want, 0u) << round;
        const size_t n = std::min({want, stream.size() - at, size_t{1} + random() % 64});
        ok = feed({reinterpret_cast<const uint8_t*>(stream.data()) + at, n});
        at += n;
      }
    }
    ASSERT_TRUE(ok) << round;
    EXPECT_EQ(got.buffers, expected.buffers) << round;
    EXPECT_EQ(got.done, expected.done) << round;
  }
}

}  // namespace
}  // namespace ublkgw::engine
