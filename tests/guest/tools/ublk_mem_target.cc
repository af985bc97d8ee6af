// A RAM-backed ublk device for guest tests of the ublk layer itself (the
// control commands, descriptor mapping, FETCH_REQ / COMMIT_AND_FETCH_REQ
// on the copy path), independent of NBD and of the engine.
//
// Usage: ublk_mem_target SIZE_MIB [QUEUE_DEPTH]
// Prints "ready /dev/ublkbN" when the device is up; SIGTERM or SIGINT stops
// and deletes it, and the process exits 0 if every step succeeded.
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "base/uring.h"
#include "ublk/control_device.h"
#include "ublk/io_queue.h"
#include "ublk/uapi.h"

namespace {

using namespace ublkgw;
using namespace ublkgw::ublk;

constexpr uint32_t kMaxIoBytes = 512 * 1024;

int Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "ublk_mem_target: %s: %s\n", what, std::string(status.message()).c_str());
  return 1;
}

// Serves one queue until every tag has been aborted by STOP_DEV.
int ServeQueue(int char_fd, uint16_t depth, std::vector<uint8_t>& disk) {
  auto descs = IoDescMap::Map(char_fd, 0, depth);
  if (!descs.ok()) return Fail("map descriptors", descs.status());
  auto ring = Ring::Create(depth * 2, 0);
  if (!ring.ok()) return Fail("queue ring", ring.status());
  auto* buffers = static_cast<uint8_t*>(
      mmap(nullptr, size_t{depth} * kMaxIoBytes, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (buffers == MAP_FAILED) return Fail("buffers", absl::ResourceExhaustedError("mmap"));
  auto buffer = [&](uint16_t tag) { return buffers + size_t{tag} * kMaxIoBytes; };

  for (uint16_t tag = 0; tag < depth; ++tag) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
    PrepIoCmd(sqe, char_fd, kIoFetchReq, 0, tag, 0, reinterpret_cast<uintptr_t>(buffer(tag)));
    io_uring_sqe_set_data64(sqe, tag);
  }
  io_uring_submit(ring->get());

  int live = depth;
  int errors = 0;
  while (live > 0) {
    io_uring_cqe* cqe = nullptr;
    if (io_uring_wait_cqe(ring->get(), &cqe) != 0) continue;
    const uint16_t tag = static_cast<uint16_t>(cqe->user_data);
    const int res = cqe->res;
    io_uring_cqe_seen(ring->get(), cqe);
    if (res == -ENODEV) {  // UBLK_IO_RES_ABORT: the device is stopping
      --live;
      continue;
    }
    if (res != kIoResOk) {
      std::fprintf(stderr, "ublk_mem_target: tag %u completed with %d\n", tag, res);
      ++errors;
      --live;
      continue;
    }
    const ublksrv_io_desc iod = descs->Get(tag);
    const uint64_t off = iod.start_sector << 9;
    const uint64_t len = uint64_t{iod.nr_sectors} << 9;
    int32_t result = static_cast<int32_t>(len);
    if (off > disk.size() || len > disk.size() - off || len > kMaxIoBytes) {
      result = -EIO;
    } else {
      switch (IodOp(iod)) {
        case kIoOpRead: std::memcpy(buffer(tag), disk.data() + off, len); break;
        case kIoOpWrite: std::memcpy(disk.data() + off, buffer(tag), len); break;
        case kIoOpFlush: result = 0; break;
        case kIoOpDiscard:
        case kIoOpWriteZeroes: std::memset(disk.data() + off, 0, len); break;
        default: result = -EOPNOTSUPP;
      }
    }
    io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
    PrepIoCmd(sqe, char_fd, kIoCommitAndFetchReq, 0, tag, result,
              reinterpret_cast<uintptr_t>(buffer(tag)));
    io_uring_sqe_set_data64(sqe, tag);
    io_uring_submit(ring->get());
  }
  munmap(buffers, size_t{depth} * kMaxIoBytes);
  return errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: ublk_mem_target SIZE_MIB [QUEUE_DEPTH]\n");
    return 2;
  }
  const uint64_t size = std::strtoull(argv[1], nullptr, 10) << 20;
  const uint16_t depth = argc > 2 ? static_cast<uint16_t>(std::atoi(argv[2])) : 64;
  std::vector<uint8_t> disk(size);

  // Signals are taken by sigwait in the main thread only.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto ctrl = ControlDevice::Open();
  if (!ctrl.ok()) return Fail("open control", ctrl.status());
  ublksrv_ctrl_dev_info info{};
  info.nr_hw_queues = 1;
  info.queue_depth = depth;
  info.max_io_buf_bytes = kMaxIoBytes;
  info.dev_id = ~0U;
  info.ublksrv_pid = getpid();
  info.flags = kFCmdIoctlEncode;
  auto added = ctrl->AddDev(info);
  if (!added.ok()) return Fail("ADD_DEV", added.status());
  const uint32_t id = added->dev_id;

  ublk_params params{};
  params.types = kParamTypeBasic | kParamTypeDiscard;
  params.basic.logical_bs_shift = 9;
  params.basic.physical_bs_shift = 12;
  params.basic.io_opt_shift = 12;
  params.basic.io_min_shift = 9;
  params.basic.max_sectors = kMaxIoBytes >> 9;
  params.basic.dev_sectors = size >> 9;
  params.discard.discard_granularity = 4096;
  params.discard.max_discard_sectors = kMaxIoBytes >> 9;
  params.discard.max_write_zeroes_sectors = kMaxIoBytes >> 9;
  params.discard.max_discard_segments = 1;
  if (auto s = ctrl->SetParams(id, params); !s.ok()) return Fail("SET_PARAMS", s);

  auto char_fd = OpenCharDevice(id, absl::Seconds(10));
  if (!char_fd.ok()) return Fail("open char device", char_fd.status());
  int queue_rc = 1;
  std::thread queue([&] { queue_rc = ServeQueue(char_fd->get(), depth, disk); });

  // START_DEV returns once every tag is fetched and the disk is added (its
  // partition scan is served by the queue thread).
  if (auto s = ctrl->StartDev(id, getpid()); !s.ok()) {
    (void)ctrl->StopDev(id);
    queue.join();
    return Fail("START_DEV", s);
  }
  auto dev_info = ctrl->GetDevInfo(id);
  if (!dev_info.ok() || dev_info->state != static_cast<uint16_t>(DevState::kLive)) {
    std::fprintf(stderr, "ublk_mem_target: device not live after START_DEV\n");
  }
  std::printf("ready %s\n", BlockDevicePath(id).c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  int rc = 0;
  if (auto s = ctrl->StopDev(id); !s.ok()) rc = Fail("STOP_DEV", s);
  queue.join();
  char_fd->Reset();  // DEL_DEV waits for the char device to be closed
  if (auto s = ctrl->DelDev(id); !s.ok()) rc = Fail("DEL_DEV", s);
  std::printf("stopped and deleted ublk device %u\n", id);
  return rc != 0 ? rc : queue_rc;
}
