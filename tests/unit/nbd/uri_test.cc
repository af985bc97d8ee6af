#include "nbd/uri.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw::nbd {
namespace {

using ::testing::HasSubstr;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::StatusIs;

TEST(UriTest, TcpWithDefaults) {
  auto uri = ParseUri("nbd://storage1");
  ASSERT_THAT(uri, IsOk());
  EXPECT_EQ(uri->transport, Uri::Transport::kTcp);
  EXPECT_FALSE(uri->tls);
  EXPECT_EQ(uri->host, "storage1");
  EXPECT_EQ(uri->port, 10809);
  EXPECT_EQ(uri->export_name, "");
  EXPECT_EQ(uri->ToString(), "nbd://storage1:10809/");
}

TEST(UriTest, TcpWithPortAndExport) {
  auto uri = ParseUri("nbd://127.0.0.1:2000/vol/disk-1");
  ASSERT_THAT(uri, IsOk());
  EXPECT_EQ(uri->host, "127.0.0.1");
  EXPECT_EQ(uri->port, 2000);
  EXPECT_EQ(uri->export_name, "vol/disk-1");
}

TEST(UriTest, ExportNameFollowsTheFirstSlash) {
  EXPECT_EQ(ParseUri("nbd://h/")->export_name, "");
  EXPECT_EQ(ParseUri("nbd://h//abs")->export_name, "/abs");
  EXPECT_EQ(ParseUri("nbd://h/a%20b%2Fc")->export_name, "a b/c");
}

TEST(UriTest, Ipv6Literals) {
  auto uri = ParseUri("nbd://[::1]:10810/x");
  ASSERT_THAT(uri, IsOk());
  EXPECT_EQ(uri->host, "::1");
  EXPECT_EQ(uri->port, 10810);
  EXPECT_EQ(uri->ToString(), "nbd://[::1]:10810/x");
  EXPECT_EQ(ParseUri("nbd://[fe80::1]/")->port, 10809);
}

TEST(UriTest, UnixSockets) {
  auto uri = ParseUri("nbd+unix:///disk?socket=/run/nbd%20x.sock");
  ASSERT_THAT(uri, IsOk());
  EXPECT_EQ(uri->transport, Uri::Transport::kUnix);
  EXPECT_EQ(uri->socket_path, "/run/nbd x.sock");
  EXPECT_EQ(uri->export_name, "disk");
  EXPECT_EQ(uri->ToString(), "nbd+unix:///disk?socket=/run/nbd%20x.sock");
  EXPECT_EQ(ParseUri("nbd+unix://?socket=/s")->export_name, "");
}

TEST(UriTest, TlsSchemesParse) {
  auto tcp = ParseUri("nbds://h/e?tls-certificates=/etc/pki");
  ASSERT_THAT(tcp, IsOk());
  EXPECT_TRUE(tcp->tls);
  auto unix_tls = ParseUri("NBDS+UNIX:///e?socket=/s");
  ASSERT_THAT(unix_tls, IsOk());
  EXPECT_TRUE(unix_tls->tls);
  EXPECT_EQ(unix_tls->transport, Uri::Transport::kUnix);
}

TEST(UriTest, RoundTripsThroughToString) {
  for (const char* text : {"nbd://h:1/e", "nbds://[::1]:5/a%3Fb", "nbd+unix:///x?socket=/tmp/s"}) {
    auto uri = ParseUri(text);
    ASSERT_THAT(uri, IsOk()) << text;
    auto again = ParseUri(uri->ToString());
    ASSERT_THAT(again, IsOk()) << uri->ToString();
    EXPECT_EQ(again->ToString(), uri->ToString());
    EXPECT_EQ(again->export_name, uri->export_name);
  }
}

struct BadUri {
  const char* text;
  const char* why;
};

class BadUriTest : public ::testing::TestWithParam<BadUri> {};

TEST_P(BadUriTest, IsRefusedWithTheReason) {
  EXPECT_THAT(ParseUri(GetParam().text),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(GetParam().why)))
      << GetParam().text;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadUriTest,
    ::testing::Values(BadUri{"storage1:10809", "expected SCHEME://"},
                      BadUri{"http://h/e", "unknown scheme 'http'"},
                      BadUri{"nbd:///e", "no host"},
                      BadUri{"nbd://h:0/e", "port '0'"},
                      BadUri{"nbd://h:65536/e", "port '65536'"},
                      BadUri{"nbd://h:x1/e", "port 'x1'"},
                      BadUri{"nbd://::1/e", "must be in brackets"},
                      BadUri{"nbd://[::1/e", "unclosed '['"},
                      BadUri{"nbd://[::1]x/e", "expected ':PORT'"},
                      BadUri{"nbd://[host]/e", "brackets hold an IPv6"},
                      BadUri{"nbd://u@h/e", "user names"},
                      BadUri{"nbd://h/a%2", "truncated %-escape"},
                      BadUri{"nbd://h/a%zz", "bad %-escape"},
                      BadUri{"nbd://h/e?socket=/s", "socket= belongs to nbd+unix"},
                      BadUri{"nbd://h/e?tls-certificates=/x", "needs a TLS scheme"},
                      BadUri{"nbd://h/e?color=red", "unknown query parameter 'color'"},
                      BadUri{"nbd+unix://h/e?socket=/s", "takes no host"},
                      BadUri{"nbd+unix:///e", "needs ?socket=PATH"}));

TEST(UriTest, AbsurdLengthsAreRefused) {
  EXPECT_THAT(ParseUri("nbd://h/" + std::string(5000, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the limit is 4096")));
}

}  // namespace
}  // namespace ublkgw::nbd
