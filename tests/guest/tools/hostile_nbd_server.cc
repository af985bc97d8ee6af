// An NBD server for the guest suite that serves a RAM export correctly,
// except for one kind of fault it commits on a schedule: the client must
// drop the connection, connect again and send what had no reply, and never
// return wrong data or write to a wrong place.
//
// Usage: hostile_nbd_server PORT SIZE_MIB FAULT [EVERY [TIMES]]
//   FAULT  what a faulty read reply does:
//          none              nothing wrong
//          wrong-magic       a reply header with a bad magic
//          unknown-cookie    the reply names a cookie never sent
//          duplicate-cookie  the right reply, then the same reply again
//          oversized-chunk   a data chunk longer than the read
//          truncated         half the data, then the connection closes
//          stall             no reply at all (the connection stays open)
//          error-N           the read fails with NBD error N (an error
//                            chunk, or a simple reply without structured
//                            replies): not a protocol fault
//   EVERY  the fault hits every EVERY-th read, counted over all
//          connections (default 20)
//   TIMES  at most this many faults in all; 0: no limit (default 3)
// SIGUSR1: from then on, every read gets the fault (a server broken for
// good, once the device is up).
// Listens on 127.0.0.1; one thread per connection; CAN_MULTI_CONN. Prints
// "listening" once it accepts, and one line per fault to stderr.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fake_server.h"
#include "nbd/bytes.h"
#include "nbd/wire.h"

namespace {

using ublkgw::nbd::ByteWriter;
using ublkgw::nbd::testing::FakePeer;
namespace wire = ublkgw::nbd;

std::atomic<bool> g_always{false};
void OnUsr1(int) { g_always.store(true); }

struct Export {
  std::mutex mu;
  std::vector<char> data;
};

struct Schedule {
  std::string fault;
  int every = 20;
  int times = 3;
  std::atomic<int> reads{0};
  std::atomic<int> faults{0};

  // Whether this read gets the fault.
  bool Hit() {
    if (fault == "none") return false;
    if (g_always.load()) return true;
    if ((reads.fetch_add(1) + 1) % every != 0) return false;
    if (times > 0 && faults.fetch_add(1) >= times) return false;
    return true;
  }
};

std::string DataChunk(uint16_t flags, uint64_t cookie, uint64_t offset, const std::string& data) {
  return ByteWriter()
      .Put(wire::kStructuredReplyMagic)
      .Put(flags)
      .Put(wire::kReplyTypeOffsetData)
      .Put(cookie)
      .Put(static_cast<uint32_t>(8 + data.size()))
      .Put(offset)
      .PutBytes(data)
      .Take();
}

// Serves one connection until the client leaves or a fault ends it.
void Serve(int fd, Export& exp, Schedule& schedule) {
  FakePeer peer(fd);
  const uint16_t flags = wire::kFlagHasFlags | wire::kFlagSendFlush | wire::kFlagCanMultiConn;
  bool structured = false;
  peer.Greet();
  for (;;) {  // the handshake
    const uint32_t opt = peer.ReadOption();
    if (opt == 0 || opt == wire::kOptAbort) return;
    if (opt == wire::kOptStructuredReply) {
      structured = true;
      peer.Reply(opt, wire::kRepAck);
    } else if (opt == wire::kOptGo) {
      peer.InfoExport(exp.data.size(), flags);
      peer.Reply(opt, wire::kRepAck);
      break;
    } else {
      peer.Reply(opt, wire::kRepErrUnsup);
    }
  }
  uint16_t type;
  uint64_t cookie, offset;
  uint32_t length;
  while (peer.ReadRequest(&type, &cookie, &offset, &length)) {
    if (type == wire::kCmdDisc) return;
    const bool in_range = offset <= exp.data.size() && length <= exp.data.size() - offset;
    if (type == wire::kCmdWrite) {
      std::string payload;
      if (!peer.Read(length, &payload)) return;
      if (in_range) {
        std::lock_guard lock(exp.mu);
        std::memcpy(exp.data.data() + offset, payload.data(), length);
      }
      peer.SimpleReply(in_range ? 0 : 22 /* EINVAL */, cookie);
      continue;
    }
    if (type != wire::kCmdRead || !in_range) {
      peer.SimpleReply(type == wire::kCmdFlush ? 0 : 22, cookie);
      continue;
    }
    std::string data;
    {
      std::lock_guard lock(exp.mu);
      data.assign(exp.data.data() + offset, length);
    }
    const bool fault = schedule.Hit();
    if (fault) {
      std::fprintf(stderr, "hostile: %s on a read of %u bytes at %llu\n", schedule.fault.c_str(),
                   length, static_cast<unsigned long long>(offset));
    }
    const std::string& f = schedule.fault;
    if (fault && f == "stall") continue;
    if (fault && f.rfind("error-", 0) == 0) {
      // A read gets a structured error chunk once they were negotiated.
      const auto error = static_cast<uint32_t>(std::atoi(f.c_str() + 6));
      if (structured) {
        peer.Write(ByteWriter()
                       .Put(wire::kStructuredReplyMagic)
                       .Put(wire::kReplyFlagDone)
                       .Put(wire::kReplyTypeError)
                       .Put(cookie)
                       .Put(uint32_t{6})  // error, message length 0
                       .Put(error)
                       .Put(uint16_t{0})
                       .Take());
      } else {
        peer.SimpleReply(error, cookie);
      }
      continue;
    }
    if (fault && f == "wrong-magic") {
      peer.Write(ByteWriter().Put(uint32_t{0x12345678}).Put(uint32_t{0}).Put(cookie).Take());
      continue;
    }
    const uint64_t reply_cookie = fault && f == "unknown-cookie" ? cookie ^ 0x5a5a0000ull : cookie;
    std::string reply;
    if (!structured) {
      reply = ByteWriter().Put(wire::kSimpleReplyMagic).Put(uint32_t{0}).Put(reply_cookie).Take();
      reply += data;
    } else if (fault && f == "oversized-chunk") {
      reply = DataChunk(wire::kReplyFlagDone, cookie, offset, data + std::string(4096, 'x'));
    } else {
      reply = DataChunk(wire::kReplyFlagDone, reply_cookie, offset, data);
    }
    if (fault && f == "truncated") {
      peer.Write(reply.substr(0, reply.size() - data.size() / 2));
      return;
    }
    peer.Write(reply);
    if (fault && f == "duplicate-cookie") peer.Write(reply);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s PORT SIZE_MIB FAULT [EVERY [TIMES]]\n", argv[0]);
    return 2;
  }
  signal(SIGUSR1, OnUsr1);
  signal(SIGPIPE, SIG_IGN);
  const int port = std::atoi(argv[1]);
  Export exp;
  exp.data.assign(static_cast<size_t>(std::atoll(argv[2])) << 20, 0);
  Schedule schedule;
  schedule.fault = argv[3];
  if (argc > 4) schedule.every = std::max(1, std::atoi(argv[4]));
  if (argc > 5) schedule.times = std::atoi(argv[5]);

  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, 16) != 0) {
    std::perror("hostile: listen");
    return 1;
  }
  std::fprintf(stderr, "hostile: listening on 127.0.0.1:%d, fault %s every %d reads, %d times\n",
               port, schedule.fault.c_str(), schedule.every, schedule.times);
  for (;;) {
    const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::thread([fd, &exp, &schedule] {
      Serve(fd, exp, schedule);
      ::close(fd);
    }).detach();
  }
}
