// ublkgwd: the ublkgw daemon. Serves the ublkgw.v1 gRPC API and hosts every
// attached volume. SIGTERM or SIGINT detaches every volume (or, with
// --on-stop keep, leaves each for the next daemon) and exits; the record of
// them stays, so the next ublkgwd attaches them again, or takes them over.
#include <pthread.h>
#include <signal.h>

#include <cstdint>
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "control/daemon.h"
#include "glog/logging.h"

int main(int argc, char** argv) {
  using ublkgw::control::DaemonOptions;
  CLI::App app{"ublkgwd: the ublkgw daemon. Attaches NBD exports as /dev/ublkbN on request\n"
               "of the ublkgw CLI (or any client of the ublkgw.v1 gRPC API)."};
  DaemonOptions o;
  app.add_option("--socket", o.socket,
                 "unix socket to serve the API on, created mode 0600 (owner only); '' for none")
      ->capture_default_str();
  app.add_option("--socket-group", o.socket_group,
                 "make the socket 0660 for this group, so its members may drive the daemon");
  app.add_option("--state-dir", o.state_dir,
                 "where attachments are recorded (state.json) and restored from at start; "
                 "'' to record nothing")
      ->capture_default_str();
  app.add_option("--listen", o.listen,
                 "also serve the API on TCP HOST:PORT, with mutual TLS only (needs the three "
                 "--tls-* files)");
  app.add_option("--tls-cert", o.tls_cert, "PEM certificate chain the TCP listener presents");
  app.add_option("--tls-key", o.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", o.tls_client_ca,
                 "PEM CA certificate(s); only clients with a certificate it signed are served");
  app.add_option("--metrics-listen", o.metrics_listen,
                 "serve Prometheus metrics on http://HOST:PORT/metrics (e.g. 127.0.0.1:9477)");
  app.add_option("--control-device", o.control_device, "the ublk control device")
      ->capture_default_str();
  int64_t send_zc_min_bytes = -1;
  app.add_option("--send-zc-min-bytes", send_zc_min_bytes,
                 "zero-copy data path: send writes of at least this many bytes with SEND_ZC "
                 "(the NIC reads the pages) and smaller ones with SEND (the socket copies); "
                 "0 for SEND_ZC always. Default: no SEND_ZC, which lends the request's pages "
                 "to the network stack: where it must copy or split them (retransmits, veth, "
                 "netem) Linux 7.2 warns of taking references to them. Try it (e.g. 65536) "
                 "only on a kernel you have tested. See docs/BENCHMARKS.md")
      ->check(CLI::Range(int64_t{0}, int64_t{UINT32_MAX}));
  app.add_flag("--batch-io", o.batch_io,
               "new devices fetch and commit their requests in batches (UBLK_F_BATCH_IO, Linux "
               "7.0+) where the kernel offers it: many requests per completion, a loop turn's "
               "commits in one command. Off by default: in our measurements it cost more CPU "
               "per request than a command per request (docs/BENCHMARKS.md); try it where "
               "many requests arrive at once");
  app.add_option("--disable-socket-ops", o.disabled_socket_ops,
                 "zero-copy data path: never use these fixed-buffer socket operations, as if "
                 "the kernel lacked them (send, send-zc, recv, write-fixed, read-fixed; "
                 "comma-separated). 'send,recv' makes a 7.2+ kernel use what 6.16 to 7.1 offer");
  app.add_option("--disable-ublk-features", o.disabled_ublk_features,
                 "make devices as if the ublk driver lacked these features (batch-io, "
                 "auto-buf-reg, zero-copy, user-recovery; comma-separated). 'batch-io' overrides "
                 "--batch-io; 'auto-buf-reg' makes a 6.16+ "
                 "driver register request buffers the way 6.15 does (REGISTER_IO_BUF per "
                 "request); adding 'zero-copy' leaves only the copy path; 'user-recovery' "
                 "makes devices that go away with the daemon");
  double io_timeout_s = absl::ToDoubleSeconds(o.reconnect.io_timeout);
  double deadline_s = absl::ToDoubleSeconds(o.reconnect.reconnect_deadline);
  bool stop_at_deadline = false;
  app.add_option("--io-timeout", io_timeout_s,
                 "seconds a request may wait for its reply before the connection counts as "
                 "stalled: it is dropped and made again, and the request sent again (0: never)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--reconnect-deadline", deadline_s,
                 "seconds requests wait for a lost connection to come back; then they, and new "
                 "ones, fail with EIO until it does (0: fail at once, no reconnecting)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--stop-reconnecting-at-deadline", stop_at_deadline,
               "after the reconnect deadline, stop trying (the device fails I/O until "
               "detached) rather than serve again when the server is back");
  std::string on_stop = "detach";
  app.add_option("--on-stop", on_stop,
                 "what SIGTERM/SIGINT does with the volumes: 'detach' removes each device "
                 "(requests in flight finish first; the next ublkgwd attaches them again); "
                 "'keep' leaves each device in the kernel, its I/O waiting, for the next "
                 "ublkgwd (same --state-dir) to take over: nothing mounted on it notices "
                 "(for upgrades and restarts). A crashed daemon's devices wait the same way. "
                 "Devices made without user recovery (an old kernel, --state-dir '', "
                 "--disable-ublk-features user-recovery) are detached. 'ublkgw detach' always "
                 "removes")
      ->capture_default_str()
      ->check(CLI::IsMember({"detach", "keep"}));
  app.footer(
      "Examples:\n"
      "  ublkgwd\n"
      "  ublkgwd --socket-group ublkgw --metrics-listen 127.0.0.1:9477\n"
      "  ublkgwd --listen 0.0.0.0:7443 --tls-cert server.pem --tls-key server.key \\\n"
      "          --tls-client-ca clients-ca.pem\n"
      "  ublkgwd --socket /tmp/ublkgw.sock --state-dir /tmp/ublkgw-state\n\n"
      "Diagnostics: GLOG_v=2 in the environment logs each hole a read zero-fills.\n\n"
      "Exit codes: 0 stopped by SIGTERM/SIGINT, 1 could not serve, 2 bad options.\n");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (send_zc_min_bytes >= 0) o.send_zc_min_bytes = static_cast<uint32_t>(send_zc_min_bytes);
  o.reconnect.io_timeout = absl::Seconds(io_timeout_s);
  o.reconnect.reconnect_deadline = absl::Seconds(deadline_s);
  o.reconnect.keep_reconnecting = !stop_at_deadline;
  o.keep_devices_on_stop = on_stop == "keep";
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;

  // A peer that resets a connection must cost that connection, not the
  // daemon: writes that cannot say MSG_NOSIGNAL (WRITE_FIXED on a socket)
  // would otherwise raise SIGPIPE.
  signal(SIGPIPE, SIG_IGN);

  // Signals are taken by sigwait below; every thread inherits the mask.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  auto daemon = ublkgw::control::Daemon::Start(o);
  if (!daemon.ok()) {
    std::cerr << "ublkgwd: " << daemon.status().message() << "\n";
    return absl::IsInvalidArgument(daemon.status()) ? 2 : 1;
  }
  int sig = 0;
  sigwait(&stop, &sig);
  LOG(INFO) << "signal " << sig << ": "
            << (o.keep_devices_on_stop ? "leaving every volume for the next ublkgwd"
                                       : "detaching every volume (records kept)")
            << " and exiting";
  (*daemon)->Stop();
  return 0;
}
