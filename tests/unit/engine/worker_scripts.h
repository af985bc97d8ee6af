// What the host tests of the queue worker say to it and to their scripted
// NBD servers (worker_harness.h): requests read off the wire, honest
// replies, recognisable data.
#ifndef UBLKGW_TESTS_UNIT_ENGINE_WORKER_SCRIPTS_H_
#define UBLKGW_TESTS_UNIT_ENGINE_WORKER_SCRIPTS_H_

#include <cstdint>
#include <functional>
#include <string>

#include "gtest/gtest.h"
#include "nbd/bytes.h"
#include "nbd/fake_server.h"
#include "nbd/wire.h"
#include "ublk/uapi.h"

namespace ublkgw::engine::testing::scripts {

using nbd::testing::FakePeer;
using Script = nbd::testing::FakeServer::Script;

constexpr uint8_t kRead = ublk::kIoOpRead;
constexpr uint8_t kWrite = ublk::kIoOpWrite;

struct Req {
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
};

inline bool ReadReq(FakePeer& peer, Req* r) {
  return peer.ReadRequest(&r->type, &r->cookie, &r->offset, &r->length);
}

// Reads one request and, for a write, its payload into `payload`.
inline bool ReadReqAndPayload(FakePeer& peer, Req* r, std::string* payload = nullptr) {
  if (!ReadReq(peer, r)) return false;
  std::string data;
  if (r->type == nbd::kCmdWrite && !peer.Read(r->length, &data)) return false;
  if (payload) *payload = data;
  return true;
}

inline std::string Fill(size_t n, char c) { return std::string(n, c); }

inline std::string DataChunk(uint64_t offset, const std::string& data) {
  return nbd::ByteWriter().Put(offset).PutBytes(data).Take();
}
inline std::string ErrorChunk(uint32_t error, const std::string& message) {
  return nbd::ByteWriter()
      .Put(error)
      .Put(static_cast<uint16_t>(message.size()))
      .PutBytes(message)
      .Take();
}

// A server that answers reads with bytes naming their offset (the byte at
// X is 'a' + X / 4096 % 26) and writes with success, until the client goes.
inline void Honest(FakePeer& peer) {
  Req r;
  while (ReadReqAndPayload(peer, &r)) {
    if (r.type == nbd::kCmdRead) {
      std::string data;
      for (uint64_t at = r.offset; at < r.offset + r.length; ++at) {
        data.push_back(static_cast<char>('a' + at / 4096 % 26));
      }
      peer.SimpleReply(0, r.cookie, data);
    } else {
      peer.SimpleReply(0, r.cookie);
    }
  }
}

inline std::string Expected(uint64_t offset, uint32_t length) {
  std::string data;
  for (uint64_t at = offset; at < offset + length; ++at) {
    data.push_back(static_cast<char>('a' + at / 4096 % 26));
  }
  return data;
}

// Reads requests and never answers, until the client goes.
inline void Silent(FakePeer& peer) {
  Req r;
  while (ReadReqAndPayload(peer, &r)) {
  }
}

// Honest, and keeps the payload of the last write in `*written` (which
// must outlive the server).
inline Script Recording(std::string* written) {
  return [written](FakePeer& peer) {
    Req r;
    std::string payload;
    while (ReadReqAndPayload(peer, &r, &payload)) {
      if (r.type == nbd::kCmdWrite) {
        *written = payload;
        peer.SimpleReply(0, r.cookie);
      } else {
        peer.SimpleReply(0, r.cookie, Expected(r.offset, r.length));
      }
    }
  };
}

// Honest, for structured replies: a read's data comes as one OFFSET_DATA
// chunk that ends the reply.
inline void HonestStructured(FakePeer& peer) {
  Req r;
  while (ReadReqAndPayload(peer, &r)) {
    if (r.type == nbd::kCmdRead) {
      peer.Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetData, r.cookie,
                 DataChunk(r.offset, Expected(r.offset, r.length)));
    } else {
      peer.SimpleReply(0, r.cookie);
    }
  }
}

// Reads `n` writes, answers them all in one write (so the worker finds
// the replies together), then is Honest.
inline Script AnswersInOneBurst(int n) {
  return [n](FakePeer& peer) {
    std::string burst;
    for (int i = 0; i < n; ++i) {
      Req r;
      ASSERT_TRUE(ReadReqAndPayload(peer, &r));
      burst += nbd::ByteWriter()
                   .Put(nbd::kSimpleReplyMagic)
                   .Put(uint32_t{0})
                   .Put(r.cookie)
                   .Take();
    }
    peer.Write(burst);
    Honest(peer);
  };
}

// Answers the first request, a read, in two chunks as qemu-nbd would: its
// first half's data, not the last chunk; then, once `before_last` returns,
// the second half as a hole that ends the reply. Then Honest.
inline Script InTwoChunks(std::function<void()> before_last) {
  return [before_last = std::move(before_last)](FakePeer& peer) {
    Req r;
    if (!ReadReq(peer, &r)) return;
    const uint32_t half = r.length / 2;
    peer.Chunk(0, nbd::kReplyTypeOffsetData, r.cookie, DataChunk(r.offset, Expected(r.offset, half)));
    before_last();
    peer.Chunk(nbd::kReplyFlagDone, nbd::kReplyTypeOffsetHole, r.cookie,
               nbd::ByteWriter().Put(r.offset + half).Put(r.length - half).Take());
    Honest(peer);
  };
}

}  // namespace ublkgw::engine::testing::scripts

#endif  // UBLKGW_TESTS_UNIT_ENGINE_WORKER_SCRIPTS_H_
