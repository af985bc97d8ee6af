// ublkgw: the command-line client of ublkgwd.
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "cli/client_commands.h"
#include "cli/exit_codes.h"
#include "cli/features_command.h"
#include "cli/info_command.h"
#include "cli/stats_command.h"
#include "ublk/control_device.h"

namespace {

constexpr char kExitCodesHelp[] = R"(Exit codes:
  0  success
  1  other failure
  2  bad command line or argument (a malformed URI, say)
  3  a precondition is not met: no ublk driver on this host (modprobe
     ublk_drv), or the NBD server requires what ublkgw cannot do (TLS)
  4  not supported: the kernel's ublk driver is too old for the command
  5  permission denied: run as root, or the server's policy refuses
  6  the NBD server (or the daemon) cannot be reached, closed the
     connection, or went silent
  7  not found: the server has no such export, or no such volume
  8  the NBD server broke the protocol)";

}  // namespace

int main(int argc, char** argv) {
  using namespace ublkgw::cli;

  CLI::App app{"ublkgw: attach remote NBD exports as local block devices (/dev/ublkbN)."};
  app.set_version_flag("--version", "ublkgw " UBLKGW_VERSION);
  app.require_subcommand(1);
  app.footer(kExitCodesHelp);

  FeaturesOptions features;
  features.device = ublkgw::ublk::kControlDevicePath;
  auto* features_cmd = app.add_subcommand(
      "features", "Show which ublk features this host's kernel supports.");
  features_cmd->add_option("--device", features.device, "ublk control device")
      ->capture_default_str();
  features_cmd->add_flag("--json", features.json, "print JSON for scripts");
  features_cmd->footer(
      "Asks the kernel's ublk driver (UBLK_U_CMD_GET_FEATURES) and lists every\n"
      "feature flag by name. Needs no daemon; needs root.\n\n"
      "Examples:\n"
      "  ublkgw features\n"
      "  ublkgw features --json | jq -r '.supported[]'\n");

  InfoOptions info;
  auto* info_cmd = app.add_subcommand("info", "Show what an NBD server exports (like nbdinfo).");
  info_cmd->add_option("URI", info.uri,
                       "nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH")
      ->required();
  info_cmd->add_flag("--list", info.list, "list the server's exports instead");
  info_cmd->add_flag("--json", info.json, "print JSON for scripts");
  info_cmd->add_option("--timeout", info.timeout_seconds, "seconds to wait for the server")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  info_cmd->footer(
      "Connects, negotiates the export as ublkgw would (structured replies,\n"
      "extended headers where offered, NBD_OPT_GO with block sizes) and prints\n"
      "size, transmission flags, block sizes and what was negotiated.\n"
      "Needs no ublk and no daemon.\n\n"
      "Examples:\n"
      "  ublkgw info nbd://storage1/vol1\n"
      "  ublkgw info nbd://[::1]:10810/\n"
      "  ublkgw info 'nbd+unix:///disk?socket=/run/nbd.sock' --json\n"
      "  ublkgw info --list nbd://storage1\n");

  ClientOptions client;
  auto add_client_options = [&](CLI::App* cmd) {
    cmd->add_option("--socket", client.socket, "the daemon's unix socket")->capture_default_str();
    cmd->add_option("--server", client.server,
                    "reach the daemon on TCP HOST:PORT (its --listen) with mutual TLS instead");
    cmd->add_option("--tls-ca", client.tls_ca, "with --server: PEM CA that signed the daemon's certificate");
    cmd->add_option("--tls-cert", client.tls_cert, "with --server: PEM certificate of this client");
    cmd->add_option("--tls-key", client.tls_key, "with --server: PEM key of --tls-cert");
    cmd->add_option("--timeout", client.timeout_seconds, "seconds to wait for the daemon's answer")
        ->capture_default_str()
        ->check(CLI::Range(1, 3600));
    cmd->add_flag("--json", client.json, "print JSON for scripts");
  };

  AttachOptions attach;
  auto* attach_cmd = app.add_subcommand(
      "attach", "Attach an NBD export as a local block device; prints /dev/ublkbN.");
  attach_cmd->add_option("URI", attach.uri,
                         "nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH")
      ->required();
  attach_cmd->add_option("--queues", attach.queues,
                         "hardware queues, one NBD connection each (several only if the "
                         "server sets CAN_MULTI_CONN)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  attach_cmd->add_option("--depth", attach.depth, "requests in flight per queue")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  attach_cmd
      ->add_option("--data-path", attach.data_path,
                   "auto (the best the kernel really supports: fused, else zero copy, else "
                   "copy), copy, zero-copy, or fused (IORING_OP_FUSED_CMD, kernels with "
                   "ublkgw's kernel/ series); zero-copy and fused fail if the kernel cannot")
      ->capture_default_str();
  attach_cmd->add_flag("--read-only", attach.read_only, "attach read-only");
  // CLI::Range alone would let "nan" through.
  const CLI::Validator seconds_up_to_a_day(
      [](std::string& text) -> std::string {
        double seconds = 0;
        if (absl::SimpleAtod(text, &seconds) && seconds >= 0 && seconds <= 86400) return "";
        return "want seconds from 0 to 86400, not '" + text + "'";
      },
      "SECONDS");
  attach_cmd
      ->add_option("--io-timeout", attach.io_timeout_s,
                   "seconds a request may wait for its reply before its connection counts as "
                   "stalled and is made again (0: never; at most 86400). Default: the daemon's "
                   "--io-timeout")
      ->check(seconds_up_to_a_day);
  attach_cmd
      ->add_option("--reconnect-deadline", attach.reconnect_deadline_s,
                   "seconds I/O waits for a lost connection before it fails with EIO (0: at "
                   "once; at most 86400). Default: the daemon's --reconnect-deadline")
      ->check(seconds_up_to_a_day);
  add_client_options(attach_cmd);
  attach_cmd->footer(
      "The daemon (ublkgwd) connects, negotiates the export and creates the device.\n\n"
      "Examples:\n"
      "  ublkgw attach nbd://storage1/vol1\n"
      "  ublkgw attach nbd://storage1/vol1 --queues 4 --depth 64\n"
      "  ublkgw attach nbd://storage1/vol1 --data-path zero-copy\n"
      "  ublkgw attach nbd://storage1/vol1 --io-timeout 10 --reconnect-deadline 600\n"
      "  ublkgw attach 'nbd+unix:///disk?socket=/run/nbd.sock' --read-only\n");

  DetachOptions detach;
  auto* detach_cmd = app.add_subcommand("detach", "Stop and remove an attached device.");
  detach_cmd->add_option("DEVICE", detach.target, "/dev/ublkbN or its id N")->required();
  detach_cmd->add_flag("--force", detach.force,
                       "fail requests in flight with EIO instead of waiting for them");
  add_client_options(detach_cmd);
  detach_cmd->footer("Examples:\n  ublkgw detach /dev/ublkb0\n  ublkgw detach 0 --force\n");

  auto* list_cmd = app.add_subcommand("list", "List the volumes with their health.");
  add_client_options(list_cmd);
  list_cmd->footer(
      "HEALTH is ok, disconnected (a queue lost its NBD connection; its I/O fails) or\n"
      "restoring (recorded, being attached again after a daemon restart); what is\n"
      "wrong is printed below the volume.\n\n"
      "Examples:\n  ublkgw list\n  ublkgw list --json | jq -r '.volumes[] | select(.health != \"HEALTH_OK\") | .device_path'\n");

  StatsOptions stats;
  auto* stats_cmd = app.add_subcommand("stats", "Show a volume's I/O statistics, once or live.");
  stats_cmd->add_option("DEVICE", stats.target, "/dev/ublkbN or its id N")->required();
  stats_cmd->add_flag("-w,--watch", stats.watch, "print rates every interval, like iostat");
  stats_cmd->add_option("-i,--interval", stats.interval_seconds, "seconds between lines (0.1 to 3600)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  stats_cmd->add_option("-n,--count", stats.count, "with --watch: stop after this many lines")
      ->check(CLI::Range(1, 1000000));
  add_client_options(stats_cmd);
  stats_cmd->footer(
      "Without --watch: operations, bytes, errors and latency percentiles (p50 to p99.9)\n"
      "per operation since the volume was attached. With --watch: per-interval rates\n"
      "(r/s, w/s, MiB/s, flushes, discards, write-zeroes), requests in flight, and the\n"
      "interval's read and write p50/p99 latency; --json prints one JSON object per line.\n\n"
      "Examples:\n"
      "  ublkgw stats /dev/ublkb0\n"
      "  ublkgw stats 0 --watch\n"
      "  ublkgw stats 0 --watch --interval 5 --count 12 --json > five-minutes.ndjson\n");

  ResizeOptions resize;
  auto* resize_cmd = app.add_subcommand("resize", "Change a live device's size (Linux 6.14+).");
  resize_cmd->add_option("DEVICE", resize.target, "/dev/ublkbN or its id N")->required();
  resize_cmd->add_option("--size", resize.size,
                         "new size in bytes or with K/M/G/T (powers of 1024); default: the "
                         "export's current size");
  add_client_options(resize_cmd);
  resize_cmd->footer(
      "Grow the export on the NBD server first, then run this: the daemon asks the\n"
      "server for the export's size and tells the kernel (UBLK_U_CMD_UPDATE_SIZE). A\n"
      "smaller --size shrinks the device (the data past it stays on the server).\n\n"
      "Examples:\n  ublkgw resize /dev/ublkb0\n  ublkgw resize 0 --size 20G\n");

  auto* daemon_cmd = app.add_subcommand(
      "daemon-info", "Show the daemon's version, kernel, ublk features and listeners.");
  add_client_options(daemon_cmd);
  daemon_cmd->footer("Examples:\n  ublkgw daemon-info\n  ublkgw daemon-info --json\n");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 reports --help and --version as "errors" with exit code 0.
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }

  if (*features_cmd) return RunFeatures(features, std::cout, std::cerr);
  if (*info_cmd) return RunInfo(info, std::cout, std::cerr);
  if (*attach_cmd) return RunAttach(client, attach, std::cout, std::cerr);
  if (*detach_cmd) return RunDetach(client, detach, std::cout, std::cerr);
  if (*list_cmd) return RunList(client, std::cout, std::cerr);
  if (*stats_cmd) return RunStats(client, stats, std::cout, std::cerr);
  if (*resize_cmd) return RunResize(client, resize, std::cout, std::cerr);
  if (*daemon_cmd) return RunDaemonInfo(client, std::cout, std::cerr);
  return kExitUsage;
}
