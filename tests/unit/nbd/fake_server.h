// An in-process NBD server for tests: a script runs against one end of a
// socketpair in its own thread; the client under test gets the other end.
// Scripts are written step by step from the server's side of the protocol,
// so each test can break exactly one rule.
#ifndef UBLKGW_TESTS_UNIT_NBD_FAKE_SERVER_H_
#define UBLKGW_TESTS_UNIT_NBD_FAKE_SERVER_H_

#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "nbd/bytes.h"
#include "nbd/stream.h"
#include "nbd/wire.h"

namespace ublkgw::nbd::testing {

// The server's side of the connection, with protocol-level helpers. Reads
// return false once the client has gone away.
class FakePeer {
 public:
  explicit FakePeer(int fd) : fd_(fd) {}

  bool Read(size_t n, std::string* out) {
    out->assign(n, '\0');
    size_t done = 0;
    while (done < n) {
      const ssize_t r = ::read(fd_, out->data() + done, n - done);
      if (r <= 0) return false;
      done += static_cast<size_t>(r);
    }
    return true;
  }
  void Write(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t w = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (w <= 0) return;
      done += static_cast<size_t>(w);
    }
  }

  // NBDMAGIC, IHAVEOPT, handshake flags; then reads the client's flags.
  uint32_t Greet(uint16_t flags = kFlagFixedNewstyle | kFlagNoZeroes) {
    Write(ByteWriter().Put(kInitMagic).Put(kOptsMagic).Put(flags).Take());
    std::string client;
    return Read(4, &client) ? LoadBe<uint32_t>(AsBytes(client).data()) : ~0u;
  }
  // Reads one option; returns its number (0 if the client went away) and
  // its data in `data`.
  uint32_t ReadOption(std::string* data = nullptr) {
    std::string header, body;
    if (!Read(kOptionHeaderSize, &header)) return 0;
    const uint32_t length = LoadBe<uint32_t>(AsBytes(header).data() + 12);
    if (!Read(length, &body)) return 0;
    if (data) *data = body;
    return LoadBe<uint32_t>(AsBytes(header).data() + 8);
  }
  void Reply(uint32_t option, uint32_t type, const std::string& data = "") {
    Write(ByteWriter()
              .Put(kOptReplyMagic)
              .Put(option)
              .Put(type)
              .Put(static_cast<uint32_t>(data.size()))
              .PutBytes(data)
              .Take());
  }
  void InfoExport(uint64_t size, uint16_t flags) {
    Reply(kOptGo, kRepInfo, ByteWriter().Put(kInfoExport).Put(size).Put(flags).Take());
  }
  void InfoBlockSize(uint32_t min, uint32_t preferred, uint32_t max) {
    Reply(kOptGo, kRepInfo, ByteWriter().Put(kInfoBlockSize).Put(min).Put(preferred).Put(max).Take());
  }

  // A whole successful handshake: refuses extended headers, accepts
  // structured replies when `structured`, answers GO with `size`/`flags`.
  void AcceptGo(uint64_t size, uint16_t flags, bool structured = true) {
    Greet();
    for (;;) {
      const uint32_t opt = ReadOption();
      if (opt == kOptExtendedHeaders) {
        Reply(opt, kRepErrUnsup);
      } else if (opt == kOptStructuredReply) {
        Reply(opt, structured ? kRepAck : kRepErrUnsup);
      } else if (opt == kOptGo) {
        InfoExport(size, flags);
        Reply(kOptGo, kRepAck);
        return;
      } else {
        return;
      }
    }
  }

  // Reads one 28-byte request; fills the fields; false if the client left.
  bool ReadRequest(uint16_t* type, uint64_t* cookie, uint64_t* offset, uint32_t* length) {
    std::string req;
    if (!Read(kRequestSize, &req)) return false;
    const uint8_t* p = AsBytes(req).data();
    *type = LoadBe<uint16_t>(p + 6);
    *cookie = LoadBe<uint64_t>(p + 8);
    *offset = LoadBe<uint64_t>(p + 16);
    *length = LoadBe<uint32_t>(p + 24);
    return true;
  }
  void SimpleReply(uint32_t error, uint64_t cookie, const std::string& data = "") {
    Write(ByteWriter().Put(kSimpleReplyMagic).Put(error).Put(cookie).PutBytes(data).Take());
  }
  void Chunk(uint16_t flags, uint16_t type, uint64_t cookie, const std::string& payload) {
    Write(ByteWriter()
              .Put(kStructuredReplyMagic)
              .Put(flags)
              .Put(type)
              .Put(cookie)
              .Put(static_cast<uint32_t>(payload.size()))
              .PutBytes(payload)
              .Take());
  }

 private:
  int fd_;
};

class FakeServer {
 public:
  using Script = std::function<void(FakePeer&)>;

  explicit FakeServer(Script script) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0) {
      client_.Reset(fds[0]);
      server_.Reset(fds[1]);
    }
    thread_ = std::thread([this, script = std::move(script)] {
      FakePeer peer(server_.get());
      script(peer);
      // A script that ends hangs up, as a real server would.
      ::shutdown(server_.get(), SHUT_RDWR);
    });
  }
  // Unblocks a script still waiting for the client, then joins it.
  ~FakeServer() {
    ::shutdown(server_.get(), SHUT_RDWR);
    thread_.join();
  }

  Stream TakeClientStream(absl::Duration timeout = absl::Seconds(5)) {
    return Stream(std::move(client_), timeout);
  }

 private:
  UniqueFd client_;
  UniqueFd server_;
  std::thread thread_;
};

}  // namespace ublkgw::nbd::testing

#endif  // UBLKGW_TESTS_UNIT_NBD_FAKE_SERVER_H_
