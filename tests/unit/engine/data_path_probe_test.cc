// The fixed-buffer probe runs on this kernel, whatever it supports, and
// answers for each socket family; the guest tests check its answers on
// known kernels.
#include "engine/data_path_probe.h"

#include <sys/socket.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw::engine {
namespace {

using ::testing::HasSubstr;
using ::ublkgw::testing::IsOk;

TEST(DataPathProbeTest, AnswersForTcpOverLoopback) {
  auto s = ProbeFixedBuffers(AF_INET);
  ASSERT_THAT(s, IsOk());
  std::cout << s->detail;
  EXPECT_THAT(s->detail, HasSubstr("SEND with a fixed buffer: "));
  EXPECT_THAT(s->detail, HasSubstr("SEND_ZC with a fixed buffer: "));
  EXPECT_THAT(s->detail, HasSubstr("RECV into a fixed buffer: "));
}

TEST(DataPathProbeTest, AnswersForUnixSockets) {
  auto s = ProbeFixedBuffers(AF_UNIX);
  ASSERT_THAT(s, IsOk());
  std::cout << s->detail;
  // Unix sockets have no zero-copy transmission.
  EXPECT_FALSE(s->send_zc);
}

TEST(DataPathProbeTest, TheSameAnswerTwice) {
  auto a = ProbeFixedBuffers(AF_INET);
  auto b = ProbeFixedBuffers(AF_INET);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->send, b->send);
  EXPECT_EQ(a->send_zc, b->send_zc);
  EXPECT_EQ(a->recv, b->recv);
}

}  // namespace
}  // namespace ublkgw::engine
