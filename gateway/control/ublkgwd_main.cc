// ublkgwd: the ublkgw daemon. Serves the ublkgw.v1 gRPC API on a unix
// socket (mode 0600) and hosts every attached volume. SIGTERM or SIGINT
// detaches every volume and exits.
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "control/service.h"
#include "control/volume_manager.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"

int main(int argc, char** argv) {
  CLI::App app{"ublkgwd: the ublkgw daemon. Attaches NBD exports as /dev/ublkbN on request\n"
               "of the ublkgw CLI (or any client of the ublkgw.v1 gRPC API)."};
  std::string socket = "/run/ublkgw/ublkgw.sock";
  app.add_option("--socket", socket, "unix socket to serve the API on (created mode 0600)")
      ->capture_default_str();
  std::string control = ublkgw::ublk::kControlDevicePath;
  app.add_option("--control-device", control, "the ublk control device")->capture_default_str();
  app.footer("Examples:\n  ublkgwd\n  ublkgwd --socket /tmp/ublkgw.sock\n");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;

  // Signals are taken by sigwait below; every thread inherits the mask.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(socket).parent_path(), ec);
  std::filesystem::remove(socket, ec);  // a stale socket from a dead daemon

  ublkgw::control::VolumeManager volumes(control);
  ublkgw::control::Service service(volumes);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  // Only the owner (root) may drive the daemon: the socket is created 0600.
  const mode_t old_umask = umask(0177);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  umask(old_umask);
  if (!server) {
    std::cerr << "ublkgwd: cannot serve on unix:" << socket
              << " (is another ublkgwd running? is the directory writable?)\n";
    return 1;
  }
  LOG(INFO) << "ublkgwd serving on unix:" << socket;

  int sig = 0;
  sigwait(&stop, &sig);
  LOG(INFO) << "signal " << sig << ": detaching every volume and exiting";
  volumes.DetachAll(/*force=*/false);
  server->Shutdown();
  std::filesystem::remove(socket, ec);
  return 0;
}
