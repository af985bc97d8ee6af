// The daemon refuses a plaintext TCP listener and half-given TLS options.
#include "control/daemon.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw::control {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::StatusIs;

TEST(DaemonOptionsTest, TheDefaultsAreAPrivateUnixSocket) {
  DaemonOptions o;
  EXPECT_EQ(o.socket, "/run/ublkgw/ublkgw.sock");
  EXPECT_EQ(o.state_dir, "/var/lib/ublkgw");
  EXPECT_THAT(CheckDaemonOptions(o), IsOk());
}

TEST(DaemonOptionsTest, UnknownSocketOpsAreRefusedByName) {
  DaemonOptions o;
  o.disabled_socket_ops = "send,recv";
  EXPECT_THAT(CheckDaemonOptions(o), IsOk());
  o.disabled_socket_ops = "send,sendzc";
  EXPECT_THAT(CheckDaemonOptions(o),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--disable-socket-ops"), HasSubstr("'sendzc'"),
                             HasSubstr("send-zc"))));
}

TEST(DaemonOptionsTest, KeepingDevicesNeedsARecord) {
  DaemonOptions o;
  o.keep_devices_on_stop = true;
  EXPECT_THAT(CheckDaemonOptions(o), IsOk());  // the default state dir
  o.state_dir = "";
  EXPECT_THAT(CheckDaemonOptions(o),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--on-stop keep"), HasSubstr("--state-dir"))));
}

TEST(DaemonOptionsTest, UnknownUblkFeaturesAreRefusedByName) {
  DaemonOptions o;
  o.disabled_ublk_features = "auto-buf-reg";
  EXPECT_THAT(CheckDaemonOptions(o), IsOk());
  o.disabled_ublk_features = "auto-buf-reg,autobufreg";
  EXPECT_THAT(CheckDaemonOptions(o),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--disable-ublk-features"), HasSubstr("'autobufreg'"))));
}

TEST(DaemonOptionsTest, PlaintextTcpIsRefused) {
  DaemonOptions o;
  o.listen = "127.0.0.1:7443";
  EXPECT_THAT(CheckDaemonOptions(o), StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("without mutual TLS")));
  o.tls_cert = "c.pem";
  o.tls_key = "k.pem";
  EXPECT_THAT(CheckDaemonOptions(o), StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("--tls-client-ca")));
  o.tls_client_ca = "ca.pem";
  EXPECT_THAT(CheckDaemonOptions(o), IsOk());
}

TEST(DaemonOptionsTest, TlsWithoutAListenerOrNoListenerAtAll) {
  DaemonOptions o;
  o.tls_cert = "c.pem";
  EXPECT_THAT(CheckDaemonOptions(o), StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("add --listen")));
  DaemonOptions none;
  none.socket = "";
  EXPECT_THAT(CheckDaemonOptions(none), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 HasSubstr("no listener")));
  none.socket_group = "disk";
  none.listen = "127.0.0.1:1";
  none.tls_cert = none.tls_key = none.tls_client_ca = "x";
  EXPECT_THAT(CheckDaemonOptions(none), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 HasSubstr("--socket-group needs")));
}

TEST(DaemonOptionsTest, UnreadableTlsFilesAreNamed) {
  DaemonOptions o;
  o.socket = "";
  o.state_dir = "";
  o.listen = "127.0.0.1:0";
  o.tls_cert = "/nonexistent/server.pem";
  o.tls_key = "/nonexistent/server.key";
  o.tls_client_ca = "/nonexistent/ca.pem";
  EXPECT_THAT(Daemon::Start(o), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("cannot read --tls-cert /nonexistent/server.pem")));
}

}  // namespace
}  // namespace ublkgw::control
