// Attaches one NBD export with the engine, in the foreground, for guest
// tests of the data path before the daemon exists.
// Usage: engine_attach URI [QUEUES] [DEPTH]
// Prints "ready /dev/ublkbN". SIGTERM detaches gracefully, SIGUSR1 forced;
// exits 0 if attach and detach both succeeded.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>

#include "engine/device.h"
#include "glog/logging.h"

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  if (argc < 2) {
    std::fprintf(stderr, "usage: engine_attach URI [QUEUES] [DEPTH]\n");
    return 2;
  }
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  ublkgw::engine::AttachOptions options;
  options.uri = argv[1];
  if (argc > 2) options.queues = static_cast<uint16_t>(std::atoi(argv[2]));
  if (argc > 3) options.depth = static_cast<uint16_t>(std::atoi(argv[3]));
  auto ctrl = ublkgw::ublk::ControlDevice::Open();
  if (!ctrl.ok()) {
    std::fprintf(stderr, "engine_attach: %s\n", std::string(ctrl.status().message()).c_str());
    return 1;
  }
  auto device = ublkgw::engine::Device::Attach(*ctrl, options);
  if (!device.ok()) {
    std::fprintf(stderr, "engine_attach: %s\n", device.status().ToString().c_str());
    return 1;
  }
  std::printf("ready %s queues=%u\n", (*device)->block_path().c_str(), (*device)->queues());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  absl::Status s = (*device)->Detach(/*force=*/sig == SIGUSR1);
  std::printf("detached: %s\n", s.ToString().c_str());
  return s.ok() ? 0 : 1;
}
