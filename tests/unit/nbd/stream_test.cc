#include "nbd/stream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <thread>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw::nbd {
namespace {

using ::testing::HasSubstr;
using ::ublkgw::testing::StatusIs;

TEST(ConnectTest, TlsIsRefusedClearlyForNow) {
  auto uri = ParseUri("nbds://127.0.0.1/disk");
  ASSERT_TRUE(uri.ok());
  EXPECT_THAT(Connect(*uri, absl::Seconds(1)),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("not supported yet")));
}

TEST(ConnectTest, MissingUnixSocketNamesIt) {
  auto uri = ParseUri("nbd+unix:///disk?socket=/nonexistent/nbd.sock");
  ASSERT_TRUE(uri.ok());
  EXPECT_THAT(Connect(*uri, absl::Seconds(1)),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("/nonexistent/nbd.sock")));
}

TEST(ConnectTest, OverlongUnixSocketPath) {
  Uri uri;
  uri.transport = Uri::Transport::kUnix;
  uri.socket_path = std::string(200, 'a');
  EXPECT_THAT(Connect(uri, absl::Seconds(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the limit is 107")));
}

// A loopback listener that never accepts, with no room for a second
// connection: a connect beyond the first waits (its SYN is dropped).
struct FullListener {
  UniqueFd fd;
  Uri uri;
};
FullListener ListenFull() {
  FullListener l;
  l.fd.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::bind(l.fd.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
  EXPECT_EQ(::listen(l.fd.get(), 0), 0);
  EXPECT_EQ(::getsockname(l.fd.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  l.uri.host = "127.0.0.1";
  l.uri.port = ntohs(addr.sin_port);
  return l;
}

void SignalAfter(int fd, absl::Duration delay) {
  absl::SleepFor(delay);
  const uint64_t one = 1;
  ASSERT_EQ(::write(fd, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
}

TEST(ConnectTest, CancelEndsAConnectThatWaits) {
  FullListener listener = ListenFull();
  auto first = Connect(listener.uri, absl::Seconds(5));
  ASSERT_TRUE(first.ok()) << first.status();
  UniqueFd cancel(::eventfd(0, EFD_CLOEXEC));
  std::thread stopper(SignalAfter, cancel.get(), absl::Milliseconds(100));
  const absl::Time start = absl::Now();
  auto second = Connect(listener.uri, absl::Seconds(60), cancel.get());
  stopper.join();
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kCancelled, HasSubstr("127.0.0.1")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));  // not the 60 s timeout
}

TEST(StreamTest, CancelEndsAReadFromASilentServer) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd peer(pair[1]);
  UniqueFd cancel(::eventfd(0, EFD_CLOEXEC));
  Stream stream(UniqueFd(pair[0]), absl::Seconds(60), cancel.get());
  std::thread stopper(SignalAfter, cancel.get(), absl::Milliseconds(100));
  uint8_t byte;
  EXPECT_THAT(stream.ReadFull({&byte, 1}), StatusIs(absl::StatusCode::kCancelled));
  stopper.join();
  // Data that is there is still no reason to go on once stopped.
  ASSERT_EQ(::write(peer.get(), "x", 1), 1);
  EXPECT_THAT(stream.ReadFull({&byte, 1}), StatusIs(absl::StatusCode::kCancelled));
}

TEST(StreamTest, WithoutCancelASilentServerTimesOut) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd peer(pair[1]);
  Stream stream(UniqueFd(pair[0]), absl::Milliseconds(50));
  uint8_t byte;
  EXPECT_THAT(stream.ReadFull({&byte, 1}),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("sent nothing for 50ms")));
}

}  // namespace
}  // namespace ublkgw::nbd
