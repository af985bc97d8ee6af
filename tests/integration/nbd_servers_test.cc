// The NBD client against real servers on loopback: nbdkit (memory plugin,
// error and delay filters), qemu-nbd (raw and qcow2) and nbd-server (a
// named export from a config file). Each server is started by the test
// and stopped with it.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/info_command.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbd/blocking_client.h"
#include "nbd/handshake.h"
#include "nbd/protocol_error.h"
#include "nbd/wire.h"
#include "server_process.h"
#include "testing/status_matchers.h"

namespace ublkgw::testing {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kExportSize = 16 << 20;

// Which server, how it is set up, and what it is known to offer.
struct ServerKind {
  std::string name;
  bool has_named_exports;     // refuses unknown export names
  std::string listed_export;  // what NBD_OPT_LIST names
};

void PrintTo(const ServerKind& kind, std::ostream* os) { *os << kind.name; }

class Servers {
 public:
  // Images live on tmpfs where there is one: flushes and FUA writes would
  // otherwise fsync a disk and make the model test ten times slower.
  Servers()
      : dir_(access("/dev/shm", W_OK) == 0 ? MakeTempDir("/dev/shm", "ublkgw-it")
                                             : MakeTempDir("ublkgw-it")) {}
  ~Servers() {
    servers_.clear();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Starts `kind` serving a kExportSize export named "disk"; returns its URI
  // base (without export), or an error to skip on.
  // `nbdkit_filters`: --filter=NAME options; `nbdkit_params`: their
  // KEY=VALUE parameters, which follow the plugin.
  absl::StatusOr<std::string> Start(const std::string& kind, bool read_only = false,
                                    std::vector<std::string> nbdkit_filters = {},
                                    std::vector<std::string> nbdkit_params = {}) {
    auto port = FreeLoopbackPort();
    if (!port.ok()) return port.status();
    const std::string base = absl::StrCat("nbd://127.0.0.1:", *port);
    std::vector<std::string> argv;
    auto ready = ServerProcess::Ready::kHandshake;
    if (kind == "nbdkit") {
      argv = {"nbdkit", "--foreground", "--exit-with-parent", "-i", "127.0.0.1", "-p",
              std::to_string(*port)};
      if (read_only) argv.push_back("-r");
      for (auto& f : nbdkit_filters) argv.push_back(f);
      argv.push_back("memory");
      argv.push_back(std::to_string(kExportSize));
      for (auto& p : nbdkit_params) argv.push_back(p);
    } else if (kind == "qemu-nbd-raw" || kind == "qemu-nbd-qcow2") {
      const bool qcow2 = kind == "qemu-nbd-qcow2";
      const std::string image = absl::StrCat(dir_, "/disk.", qcow2 ? "qcow2" : "raw");
      auto made = RunCommand({"qemu-img", "create", "-q", "-f", qcow2 ? "qcow2" : "raw", image,
                              std::to_string(kExportSize)});
      if (!made.ok()) return made;
      argv = {"qemu-nbd", "-f", qcow2 ? "qcow2" : "raw", "-x", "disk", "-b", "127.0.0.1", "-p",
              std::to_string(*port), "--persistent", "--shared=8", "--discard=unmap"};
      if (read_only) argv.push_back("--read-only");
      argv.push_back(image);
    } else if (kind == "nbd-server") {
      const std::string image = absl::StrCat(dir_, "/disk.img");
      std::ofstream(image).close();
      std::filesystem::resize_file(image, kExportSize);
      const std::string config = absl::StrCat(dir_, "/nbd-server.conf");
      std::ofstream(config) << "[generic]\n"
                            << "  listenaddr = 127.0.0.1\n"
                            << "  port = " << *port << "\n"
                            << "  allowlist = true\n"
                            << "[disk]\n"
                            << "  exportname = " << image << "\n"
                            << "  trim = true\n"
                            << "  flush = true\n"
                            << "  fua = true\n"
                            << "  readonly = " << (read_only ? "true" : "false") << "\n"
                            << "[other]\n"
                            << "  exportname = " << image << "\n"
                            << "  readonly = true\n";
      // -d: stay in the foreground (and serve one client, which is all a
      // test uses), so the process is ours to stop.
      argv = {"nbd-server", "-C", config, "-d"};
      ready = ServerProcess::Ready::kListening;
    } else {
      return absl::InvalidArgumentError(kind);
    }
    auto server = ServerProcess::Start(argv, base + "/disk", ready);
    if (!server.ok()) return server.status();
    servers_.push_back(*std::move(server));
    return base;
  }

  ServerProcess& last() { return servers_.back(); }

 private:
  std::string dir_;
  std::vector<ServerProcess> servers_;
};

absl::StatusOr<nbd::BlockingClient> Connect(const std::string& uri_text,
                                            absl::Duration timeout = absl::Seconds(10)) {
  auto uri = nbd::ParseUri(uri_text);
  if (!uri.ok()) return uri.status();
  nbd::ClientOptions options;
  options.timeout = timeout;
  return nbd::BlockingClient::Connect(*uri, options);
}

class EachServerTest : public ::testing::TestWithParam<ServerKind> {
 protected:
  void SetUp() override {
    auto base = servers_.Start(GetParam().name);
    if (absl::IsNotFound(base.status())) GTEST_SKIP() << base.status();
    ASSERT_THAT(base, IsOk());
    base_ = *base;
  }
  Servers servers_;
  std::string base_;
};

TEST_P(EachServerTest, InfoDescribesTheExport) {
  std::ostringstream out, err;
  const int code = cli::RunInfo({base_ + "/disk", false, true, 10}, out, err);
  ASSERT_EQ(code, 0) << err.str();
  const auto json = nlohmann::json::parse(out.str());
  std::cerr << GetParam().name << ": " << json.dump() << "\n";
  EXPECT_EQ(json["size"], kExportSize);
  EXPECT_EQ(json["read_only"], false);
  EXPECT_EQ(json["export_name"], "disk");
  EXPECT_EQ(json["uri"], base_ + "/disk");
  const auto names = json["transmission_flag_names"].get<std::vector<std::string>>();
  EXPECT_THAT(names, ::testing::Contains("HAS_FLAGS"));
  EXPECT_THAT(names, ::testing::Contains("SEND_FLUSH"));
}

TEST_P(EachServerTest, UnknownExportIsNotFound) {
  if (!GetParam().has_named_exports) GTEST_SKIP() << GetParam().name << " serves any export name";
  auto client = Connect(base_ + "/no-such-export");
  EXPECT_THAT(client, StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-export")));
}

TEST_P(EachServerTest, ListsItsExports) {
  std::ostringstream out, err;
  ASSERT_EQ(cli::RunInfo({base_, /*list=*/true, /*json=*/true, 10}, out, err), 0) << err.str();
  const auto json = nlohmann::json::parse(out.str());
  std::vector<std::string> names;
  for (const auto& e : json["exports"]) names.push_back(e["name"]);
  EXPECT_THAT(names, ::testing::Contains(GetParam().listed_export));
}

// qemu-nbd writes every structured chunk (and every option reply's parts)
// with a sendmsg of its own, without TCP_NODELAY: Nagle's algorithm holds
// each next part until the last is acknowledged, and Linux delays that ACK
// by at least 40 ms while it waits for a request to piggyback it on. The
// client acknowledges at once whenever it waits for more (nbd::AckNow);
// without that, each of these reads (data, then a hole) stalled for 40 ms,
// 8 ms per request on average over a mixed workload.
TEST_P(EachServerTest, RepliesInPartsDoNotWaitForDelayedAcks) {
  auto client = Connect(base_ + "/disk");
  ASSERT_THAT(client, IsOk());
  std::vector<uint8_t> data(4096, 0x5a), buf(2 * data.size());
  ASSERT_THAT(client->Write(0, data, false), IsOk());
  constexpr int kReads = 50;
  const absl::Time start = absl::Now();
  for (int i = 0; i < kReads; ++i) {
    ASSERT_THAT(client->Read(0, buf), IsOk());
    ASSERT_EQ(buf[0], 0x5a);
    ASSERT_EQ(buf.back(), 0);
  }
  // Stalled, they take at least kReads * 40 ms = 2 s; unstalled, about a
  // millisecond each even under a sanitizer.
  EXPECT_LT(absl::Now() - start, absl::Seconds(1)) << kReads << " reads of data and a hole";
}

// Thousands of random writes, reads, trims and zero-writes; every read is
// compared with an in-memory model. Trimmed bytes are "unknown" until
// written again (the protocol lets a trimmed range read as anything).
TEST_P(EachServerTest, RandomOperationsMatchAModel) {
  auto client = Connect(base_ + "/disk");
  ASSERT_THAT(client, IsOk());
  const nbd::ExportInfo& info = client->info();
  ASSERT_EQ(info.size, kExportSize);
  const uint64_t block = std::max<uint64_t>(info.min_block, 512);

  const char* seed_env = std::getenv("UBLKGW_MODEL_SEED");
  const uint32_t seed = seed_env ? std::strtoul(seed_env, nullptr, 10) : std::random_device{}();
  std::cerr << GetParam().name << ": UBLKGW_MODEL_SEED=" << seed << "\n";
  std::mt19937_64 rng(seed);

  std::vector<uint8_t> model(kExportSize, 0);
  std::vector<bool> known(kExportSize, true);  // a fresh export reads as zeroes
  std::vector<uint8_t> buf;
  int counts[5] = {};
  const int kOps = 3000;
  for (int i = 0; i < kOps; ++i) {
    const uint64_t blocks = 1 + rng() % (65536 / block);
    const uint64_t length = blocks * block;
    const uint64_t offset = (rng() % ((kExportSize - length) / block + 1)) * block;
    const int op = rng() % 100;
    if (op < 35) {  // write
      buf.resize(length);
      for (auto& b : buf) b = static_cast<uint8_t>(rng());
      const bool fua = info.can(nbd::kFlagSendFua) && rng() % 8 == 0;
      ASSERT_THAT(client->Write(offset, buf, fua), IsOk()) << "op " << i;
      std::copy(buf.begin(), buf.end(), model.begin() + offset);
      std::fill(known.begin() + offset, known.begin() + offset + length, true);
      ++counts[0];
    } else if (op < 75) {  // read
      buf.assign(length, 0xa5);
      ASSERT_THAT(client->Read(offset, buf), IsOk()) << "op " << i;
      for (uint64_t j = 0; j < length; ++j) {
        if (known[offset + j] && buf[j] != model[offset + j]) {
          FAIL() << GetParam().name << ": op " << i << " read [" << offset << ", +" << length
                 << ") differs from the model at byte " << offset + j << " (seed " << seed << ")";
        }
      }
      ++counts[1];
    } else if (op < 85) {  // trim
      if (!info.can(nbd::kFlagSendTrim)) continue;
      ASSERT_THAT(client->Trim(offset, length), IsOk()) << "op " << i;
      std::fill(known.begin() + offset, known.begin() + offset + length, false);
      ++counts[2];
    } else if (op < 95) {  // write zeroes
      if (!info.can(nbd::kFlagSendWriteZeroes)) continue;
      uint16_t flags = rng() % 2 ? nbd::kCmdFlagNoHole : 0;
      const bool fast = info.can(nbd::kFlagSendFastZero) && rng() % 4 == 0;
      if (fast) flags |= nbd::kCmdFlagFastZero;
      const absl::Status s = client->WriteZeroes(offset, length, flags);
      if (fast && absl::IsUnimplemented(s)) {
        // FAST_ZERO may be refused (NBD_ENOTSUP) when zeroing would be slow;
        // the range is then unspecified until written again.
        std::fill(known.begin() + offset, known.begin() + offset + length, false);
        ++counts[3];
        continue;
      }
      ASSERT_THAT(s, IsOk()) << "op " << i;
      std::fill(model.begin() + offset, model.begin() + offset + length, 0);
      std::fill(known.begin() + offset, known.begin() + offset + length, true);
      ++counts[3];
    } else if (op < 97) {  // cache (a hint: contents unchanged)
      if (!info.can(nbd::kFlagSendCache)) continue;
      ASSERT_THAT(client->Cache(offset, length), IsOk()) << "op " << i;
    } else {
      ASSERT_THAT(client->Flush(), IsOk()) << "op " << i;
      ++counts[4];
    }
  }
  std::cerr << GetParam().name << ": " << counts[0] << " writes, " << counts[1] << " reads, "
            << counts[2] << " trims, " << counts[3] << " zero-writes, " << counts[4]
            << " flushes; mode " << static_cast<int>(info.mode) << "\n";
  EXPECT_GT(counts[1], kOps / 4);
  EXPECT_THAT(client->Disconnect(), IsOk());
}

INSTANTIATE_TEST_SUITE_P(Servers, EachServerTest,
                         ::testing::Values(ServerKind{"nbdkit", false, ""},
                                           ServerKind{"qemu-nbd-raw", true, "disk"},
                                           ServerKind{"qemu-nbd-qcow2", true, "disk"},
                                           ServerKind{"nbd-server", true, "disk"}),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(ReadOnlyExportTest, WritesAreRefusedBeforeTheWire) {
  for (const char* kind : {"nbdkit", "qemu-nbd-raw", "nbd-server"}) {
    Servers servers;
    auto base = servers.Start(kind, /*read_only=*/true);
    if (absl::IsNotFound(base.status())) GTEST_SKIP() << base.status();
    ASSERT_THAT(base, IsOk());
    auto client = Connect(*base + "/disk");
    ASSERT_THAT(client, IsOk());
    EXPECT_TRUE(client->info().read_only()) << kind;
    std::vector<uint8_t> buf(4096, 1);
    EXPECT_THAT(client->Write(0, buf), StatusIs(absl::StatusCode::kFailedPrecondition)) << kind;
    EXPECT_THAT(client->Read(0, buf), IsOk()) << kind;
  }
}

TEST(NbdkitFiltersTest, ServerErrorsReachTheCallerAndKeepTheConnection) {
  Servers servers;
  auto base = servers.Start("nbdkit", false, {"--filter=error"},
                            {"error-pread=EIO", "error-pread-rate=100%"});
  if (absl::IsNotFound(base.status())) GTEST_SKIP() << base.status();
  ASSERT_THAT(base, IsOk());
  auto client = Connect(*base + "/disk");
  ASSERT_THAT(client, IsOk());
  std::vector<uint8_t> buf(4096, 7);
  EXPECT_THAT(client->Read(0, buf), StatusIs(absl::StatusCode::kUnknown, HasSubstr("Input/output")));
  EXPECT_THAT(client->Write(0, buf), IsOk());  // the connection is still good
}

TEST(NbdkitFiltersTest, ASilentServerTimesOutAndRetiresTheConnection) {
  Servers servers;
  auto base = servers.Start("nbdkit", false, {"--filter=delay"}, {"delay-read=3"});
  if (absl::IsNotFound(base.status())) GTEST_SKIP() << base.status();
  ASSERT_THAT(base, IsOk());
  auto client = Connect(*base + "/disk", absl::Milliseconds(500));
  ASSERT_THAT(client, IsOk());
  std::vector<uint8_t> buf(4096);
  EXPECT_THAT(client->Read(0, buf), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(client->Read(0, buf), StatusIs(absl::StatusCode::kFailedPrecondition));
}

// The other transports, against nbdkit: a unix socket, and IPv6 loopback.
TEST(TransportTest, UnixSocket) {
  const std::string dir = MakeTempDir("ublkgw-unix");
  const std::string socket = dir + "/nbd.sock";
  const std::string uri = "nbd+unix:///disk?socket=" + socket;
  auto server = ServerProcess::Start(
      {"nbdkit", "--foreground", "--exit-with-parent", "-U", socket, "memory", "1M"}, uri);
  if (absl::IsNotFound(server.status())) GTEST_SKIP() << server.status();
  ASSERT_THAT(server, IsOk());
  auto client = Connect(uri);
  ASSERT_THAT(client, IsOk());
  EXPECT_EQ(client->info().size, 1u << 20);
  std::vector<uint8_t> out(4096, 0x5a), in(4096);
  ASSERT_THAT(client->Write(4096, out), IsOk());
  ASSERT_THAT(client->Read(4096, in), IsOk());
  EXPECT_EQ(in, out);
  EXPECT_THAT(client->Disconnect(), IsOk());
  server->Stop();
  std::filesystem::remove_all(dir);
}

TEST(TransportTest, Ipv6Loopback) {
  auto port = FreeLoopbackPort();
  ASSERT_THAT(port, IsOk());
  const std::string uri = absl::StrCat("nbd://[::1]:", *port, "/");
  auto server = ServerProcess::Start({"nbdkit", "--foreground", "--exit-with-parent", "-i", "::1",
                                      "-p", std::to_string(*port), "memory", "1M"},
                                     uri, ServerProcess::Ready::kHandshake, absl::Seconds(5));
  if (!server.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << server.status();
  std::ostringstream out, err;
  ASSERT_EQ(cli::RunInfo({uri, false, true, 5}, out, err), 0) << err.str();
  EXPECT_EQ(nlohmann::json::parse(out.str())["size"], 1u << 20);
}

TEST(KilledServerTest, RequestsFailCleanly) {
  Servers servers;
  auto base = servers.Start("nbdkit");
  if (absl::IsNotFound(base.status())) GTEST_SKIP() << base.status();
  ASSERT_THAT(base, IsOk());
  auto client = Connect(*base + "/disk", absl::Seconds(5));
  ASSERT_THAT(client, IsOk());
  servers.last().Stop();
  std::vector<uint8_t> buf(4096);
  EXPECT_THAT(client->Read(0, buf), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(UnreachableServerTest, SaysSoWithTheAddress) {
  auto port = FreeLoopbackPort();
  ASSERT_THAT(port, IsOk());
  const std::string uri = absl::StrCat("nbd://127.0.0.1:", *port, "/disk");
  std::ostringstream out, err;
  EXPECT_EQ(cli::RunInfo({uri, false, false, 5}, out, err), 6);
  EXPECT_THAT(err.str(), HasSubstr(absl::StrCat("127.0.0.1:", *port)));
  EXPECT_THAT(err.str(), HasSubstr("is the NBD server running"));
}

}  // namespace
}  // namespace ublkgw::testing
