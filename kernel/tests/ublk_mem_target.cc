// A RAM-backed ublk device for guest tests of the ublk layer itself (the
// control commands, descriptor mapping, FETCH_REQ / COMMIT_AND_FETCH_REQ
// on the copy path), independent of NBD and of the engine.
//
// Usage: ublk_mem_target SIZE_MIB [QUEUE_DEPTH] [--fused]
// Prints "ready /dev/ublkbN" when the device is up; SIGTERM or SIGINT stops
// and deletes it, and the process exits 0 if every step succeeded.
//
// --fused (kernels carrying kernel/patches): the disk is a memfd, and each
// read or write moves in one IORING_OP_FUSED_CMD, UBLK_U_IO_FUSED_SUBMIT_IO
// as master lending the request's pages to a READ or WRITE of the memfd as
// slave. Before serving, it checks what the kernel must refuse (a slave op
// that cannot be one, a drained slave; a refused slave's link fails what
// it links to; a SEND_ZC slave refused at its prep posts no notification).
// On the first read it checks that the pages of a READ request cannot be
// lent to an op that reads them, that a short slave breaks its link and
// gives the master its byte count, and that a drained master runs (its
// slave is counted with it, never waited for). Then socket slaves over TCP
// loopback: the first write goes out by a SEND slave and the second by
// SEND_ZC (result, notification and master all come), the next read comes
// in by a RECV slave, and the two reads after it first have a RECV slave
// on their pages abandoned, by its ring's exit and by ASYNC_CANCEL (the
// request must still complete).
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "base/status.h"
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

// A FETCH_REQ or COMMIT_AND_FETCH_REQ completion: true when it brings the
// tag a request. Otherwise the tag is done: aborted by STOP_DEV, or failed
// (counted in `errors`).
bool Fetched(int res, uint16_t tag, int& live, int& errors) {
  if (res == kIoResOk) return true;
  if (res != -ENODEV) {  // -ENODEV is UBLK_IO_RES_ABORT: the device is stopping
    std::fprintf(stderr, "ublk_mem_target: tag %u completed with %d\n", tag, res);
    ++errors;
  }
  --live;
  return false;
}

// The request's byte range; false when it does not fit the disk or the buffer.
bool RequestRange(const ublksrv_io_desc& iod, uint64_t disk_size, uint64_t& off, uint64_t& len) {
  off = iod.start_sector << 9;
  len = uint64_t{iod.nr_sectors} << 9;
  return off <= disk_size && len <= disk_size - off && len <= kMaxIoBytes;
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
    if (!Fetched(res, tag, live, errors)) continue;
    const ublksrv_io_desc iod = descs->Get(tag);
    uint64_t off = 0, len = 0;
    int32_t result = 0;
    if (!RequestRange(iod, disk.size(), off, len)) {
      result = -EIO;
    } else {
      result = static_cast<int32_t>(len);
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

// --fused: user_data of a fused command's master and of its slave (whose
// CQE comes only when it fails), next to the tag.
constexpr uint64_t kMasterBit = 1ULL << 32;
constexpr uint64_t kSlaveBit = 1ULL << 33;

// Prepares one fused command in a 128-byte SQE slot: the ublk command for
// `tag`, then `slave_op` (READ or WRITE) of `len` bytes at `off` of disk_fd,
// starting at the request's first byte.
// The master half, for `tag`; returns the slave's half, zeroed.
io_uring_sqe* PrepMaster(io_uring_sqe* sqe, int char_fd, uint16_t tag) {
  PrepIoCmd(sqe, char_fd, kIoFusedSubmitIo, 0, tag, 0, 0);
  sqe->opcode = kIoringOpFusedCmd;
  io_uring_sqe_set_data64(sqe, tag | kMasterBit);
  io_uring_sqe* slave = sqe + 1;
  std::memset(slave, 0, sizeof(*slave));
  return slave;
}

void PrepFused(io_uring_sqe* sqe, int char_fd, uint16_t tag, int disk_fd, uint8_t slave_op,
               uint32_t len, uint64_t off) {
  io_uring_sqe* slave = PrepMaster(sqe, char_fd, tag);
  if (slave_op == IORING_OP_READ) {
    io_uring_prep_read(slave, disk_fd, nullptr, len, off);
  } else {
    io_uring_prep_write(slave, disk_fd, nullptr, len, off);
  }
  slave->flags = IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(slave, tag | kSlaveBit);
}

constexpr uint64_t kNopData = 1ULL << 34;

void PrepNop(io_uring* ring) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  io_uring_prep_nop(sqe);
  io_uring_sqe_set_data64(sqe, kNopData);
}

// Submits what is queued and hands `n` CQEs to `seen`, or fails when they
// do not come within 10 seconds (a fused command the kernel never ends).
template <typename Seen>
bool Reap(io_uring* ring, int n, Seen seen) {
  for (int i = 0; i < n; ++i) {
    // Again each time: a submit stops at an SQE that fails outside a link.
    io_uring_submit(ring);
    __kernel_timespec deadline{.tv_sec = 10, .tv_nsec = 0};
    io_uring_cqe* cqe = nullptr;
    const int ret = io_uring_wait_cqe_timeout(ring, &cqe, &deadline);
    if (ret == -EINTR) {
      --i;
      continue;
    }
    if (ret != 0) {
      std::fprintf(stderr, "ublk_mem_target: waited 10 s for CQE %d of %d: %d\n", i + 1, n, ret);
      return false;
    }
    seen(cqe->user_data, cqe->res);
    io_uring_cqe_seen(ring, cqe);
  }
  return true;
}

// Submits what is queued and returns the next CQE that is not a slave's
// (a failed slave's result also reaches its master's CQE).
int NextResult(io_uring* ring, uint64_t* user_data) {
  for (;;) {
    io_uring_submit(ring);
    io_uring_cqe* cqe = nullptr;
    if (io_uring_wait_cqe(ring, &cqe) != 0) continue;
    *user_data = cqe->user_data;
    const int res = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    if (*user_data & kSlaveBit) {
      std::fprintf(stderr, "ublk_mem_target: fused slave of tag %u: %d\n",
                   static_cast<unsigned>(*user_data & 0xffff), res);
      continue;
    }
    return res;
  }
}

// How a refused fused command's slave ends: refused before the master ran
// (at set-up), it never existed as a request and posts nothing; refused
// when the master is issued, it is cancelled and says so (-ECANCELED).
enum class Slave { kNone, kCancelled };

// Submits what is queued, ending with the fused command whose master
// carries `master_ud`: its master must complete with `want`, its slave as
// `slave` says, and no other CQE may come (no SEND_ZC notification, which
// would arrive as task work by the time two NOPs behind it are done).
// `got`, if given, receives the master's result even when it is not `want`.
bool Refused(io_uring* ring, uint64_t master_ud, int want, Slave slave, const char* what,
             int* got = nullptr) {
  const uint64_t slave_ud = (master_ud & ~kMasterBit) | kSlaveBit;
  int master = 1, strays = 0, cancelled = 0;
  auto seen = [&](uint64_t ud, int res) {
    if (ud == master_ud) {
      master = res;
    } else if (ud == slave_ud && res == -ECANCELED) {
      ++cancelled;
    } else if (ud != kNopData) {
      std::fprintf(stderr, "ublk_mem_target: %s: another CQE %#llx: %d\n", what,
                   static_cast<unsigned long long>(ud), res);
      ++strays;
    }
  };
  PrepNop(ring);
  bool reaped = Reap(ring, 2, seen);
  if (reaped) {
    PrepNop(ring);
    reaped = Reap(ring, 1, seen);
  }
  io_uring_cqe* left = nullptr;
  while (io_uring_peek_cqe(ring, &left) == 0) {
    seen(left->user_data, left->res);
    io_uring_cqe_seen(ring, left);
  }
  if (got) *got = master;
  if (!reaped) return false;
  const int want_cancelled = slave == Slave::kCancelled ? 1 : 0;
  if (master != want || cancelled != want_cancelled || strays != 0) {
    std::fprintf(stderr,
                 "ublk_mem_target: %s: master %d (want %d), slave cancelled %d (want %d), %d "
                 "other CQEs (want 0)\n",
                 what, master, want, cancelled, want_cancelled, strays);
    return false;
  }
  return true;
}

// What the kernel must refuse before any request exists: the opcode shows
// in the probe, and a slave that cannot be one fails its master at prep.
bool CheckFusedGuards(int char_fd, int disk_fd) {
  auto ring = Ring::Create(8, IORING_SETUP_SQE128);
  if (!ring.ok()) return Fail("guard ring", ring.status()) == 0;
  io_uring_probe* probe = io_uring_get_probe_ring(ring->get());
  const bool listed = probe && io_uring_opcode_supported(probe, kIoringOpFusedCmd);
  if (probe) io_uring_free_probe(probe);
  if (!listed) {
    std::fprintf(stderr, "ublk_mem_target: IORING_OP_FUSED_CMD is not in the probe\n");
    return false;
  }
  struct Case {
    const char* what;
    uint8_t slave_op;
    uint8_t slave_flags;
  } cases[] = {{"a NOP slave", IORING_OP_NOP, 0},
               {"a URING_CMD slave", IORING_OP_URING_CMD, 0},
               {"a drained slave", IORING_OP_READ, IOSQE_IO_DRAIN}};
  for (const Case& c : cases) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
    PrepFused(sqe, char_fd, 0, disk_fd, IORING_OP_READ, 4096, 0);
    sqe[1].opcode = c.slave_op;
    sqe[1].flags |= c.slave_flags;
    uint64_t user_data = 0;
    const int res = NextResult(ring->get(), &user_data);
    if (res != -EINVAL) {
      std::fprintf(stderr, "ublk_mem_target: %s: master completed %d, want %d\n", c.what, res,
                   -EINVAL);
      return false;
    }
    std::printf("fused: %s is refused (EINVAL)\n", c.what);
  }
  // A slave refused at set-up fails its master; the slave's link moved to
  // the master, so what it links to is cancelled, never run alone.
  {
    io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
    PrepFused(sqe, char_fd, 0, disk_fd, IORING_OP_READ, 4096, 0);
    sqe[1].buf_index = 1;  // a fused slave's buffer is the lent one: refused
    sqe[1].flags |= IOSQE_IO_LINK;
    PrepNop(ring->get());
    int master = 1, nop = 1;
    if (!Reap(ring->get(), 2, [&](uint64_t ud, int res) {
          (ud == kNopData ? nop : master) = res;
        })) {
      return false;
    }
    if (master != -EINVAL || nop != -ECANCELED) {
      std::fprintf(stderr,
                   "ublk_mem_target: a refused slave's link: master %d, linked NOP %d; want %d, "
                   "%d\n",
                   master, nop, -EINVAL, -ECANCELED);
      return false;
    }
    std::printf("fused: a refused slave fails its master and cancels what it links to\n");
  }
  // A SEND_ZC slave whose prep fails after it took its notification posts
  // neither CQE: the master alone reports the error.
  {
    io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
    PrepFused(sqe, char_fd, 0, disk_fd, IORING_OP_READ, 4096, 0);
    sqe[1].opcode = IORING_OP_SEND_ZC;
    sqe[1].flags = 0;
    sqe[1].ioprio = 1U << 15;  // no such SEND_ZC flag: refused at prep
    if (!Refused(ring->get(), kMasterBit, -EINVAL, Slave::kNone,
                 "a SEND_ZC slave refused at prep")) {
      return false;
    }
    std::printf("fused: a SEND_ZC slave refused at prep posts no notification\n");
  }
  // The master of a fused command is a command of a file that lends its
  // buffer: on a file without uring_cmd (the memfd) it is refused, and its
  // slave is cancelled, never run.
  {
    io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
    PrepFused(sqe, disk_fd, 0, disk_fd, IORING_OP_READ, 4096, 0);
    if (!Refused(ring->get(), kMasterBit, -EOPNOTSUPP, Slave::kCancelled, "a master on a memfd")) {
      return false;
    }
    std::printf("fused: a master that is not a ublk command is refused (EOPNOTSUPP)\n");
  }
  // The opcode takes a 128-byte SQE: a ring of 64-byte ones refuses it.
  // (The slave's half is written into the next slot, which is never
  // submitted.)
  {
    auto plain = Ring::Create(4, 0);
    if (!plain.ok()) return Fail("a ring without SQE128", plain.status()) == 0;
    PrepFused(io_uring_get_sqe(plain->get()), char_fd, 0, disk_fd, IORING_OP_READ, 4096, 0);
    if (!Refused(plain->get(), kMasterBit, -EINVAL, Slave::kNone, "a ring without SQE128")) {
      return false;
    }
    std::printf("fused: a ring without SQE128 refuses it (EINVAL)\n");
  }
  return true;
}

// The first READ request, before its data moves: only the ublk command
// that lends may be a master. Another, taken as itself, would complete
// with its slave never run: UBLK_U_IO_REGISTER_IO_BUF, which succeeds on
// this request outside a fused command, is refused with EINVAL (on a ring
// of its own, with a buffer table it could register into), and no CQE
// but the master's comes.
bool CheckOtherUblkMaster(int char_fd, uint16_t tag, int disk_fd) {
  auto ring = Ring::Create(4, IORING_SETUP_SQE128);
  if (!ring.ok()) return Fail("a ring for another master", ring.status()) == 0;
  if (const int ret = io_uring_register_buffers_sparse(ring->get(), 1); ret != 0) {
    std::fprintf(stderr, "ublk_mem_target: a sparse buffer table: %d\n", ret);
    return false;
  }
  io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
  PrepFused(sqe, char_fd, tag, disk_fd, IORING_OP_READ, 4096, 0);
  sqe->cmd_op = kIoRegisterIoBuf;  // addr 0: slot 0 of the table
  int master = 1;
  const bool refused = Refused(ring->get(), tag | kMasterBit, -EINVAL, Slave::kCancelled,
                               "REGISTER_IO_BUF as a fused master", &master);
  if (master == 0) {  // registered: take the request's pages back out
    io_uring_sqe* un = io_uring_get_sqe(ring->get());
    PrepIoCmd(un, char_fd, kIoUnregisterIoBuf, 0, tag, 0, 0);
    Reap(ring->get(), 1, [](uint64_t, int) {});
  }
  if (!refused) return false;
  std::printf("fused: another ublk command as master is refused (EINVAL)\n");
  return true;
}

// The first READ request, before its data moves: a short slave fails its
// link and its master carries the short count.
bool CheckShortSlave(io_uring* ring, int char_fd, uint16_t tag, int disk_fd, uint64_t disk_size,
                     uint64_t len) {
  constexpr uint32_t kTail = 512;  // the slave reads the disk's last sector only
  if (len <= kTail) return true;
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  PrepFused(sqe, char_fd, tag, disk_fd, IORING_OP_READ, static_cast<uint32_t>(len),
            disk_size - kTail);
  sqe[1].flags |= IOSQE_IO_LINK;
  PrepNop(ring);
  // Three CQEs: a failed slave posts its own, CQE_SKIP_SUCCESS or not.
  int master = 1, nop = 1, slave = 1;
  if (!Reap(ring, 3, [&](uint64_t ud, int res) {
        if (ud == kNopData) {
          nop = res;
        } else if (ud == (tag | kMasterBit)) {
          master = res;
        } else if (ud == (tag | kSlaveBit)) {
          slave = res;
        } else {  // the first read comes alone (the partition scan): never
          std::fprintf(stderr, "ublk_mem_target: an unexpected CQE %#llx: %d\n",
                       static_cast<unsigned long long>(ud), res);
        }
      })) {
    return false;
  }
  if (master != static_cast<int>(kTail) || slave != static_cast<int>(kTail) ||
      nop != -ECANCELED) {
    std::fprintf(stderr,
                 "ublk_mem_target: a short fused READ: master %d, slave %d, linked NOP %d; want "
                 "%u, %u, %d\n",
                 master, slave, nop, kTail, kTail, -ECANCELED);
    return false;
  }
  std::printf("fused: a short slave gives its master the count and breaks its link\n");
  return true;
}

// Moves a READ request's data with one fused command under IOSQE_IO_DRAIN,
// on a fresh ring: the master's result, or nothing if it never completed.
std::optional<int> DrainedRead(int char_fd, uint16_t tag, int disk_fd, uint32_t len,
                               uint64_t off) {
  auto ring = Ring::Create(4, IORING_SETUP_SQE128);
  if (!ring.ok()) {
    Fail("drain ring", ring.status());
    return -EIO;
  }
  io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
  PrepFused(sqe, char_fd, tag, disk_fd, IORING_OP_READ, len, off);
  sqe->flags |= IOSQE_IO_DRAIN;
  sqe[1].flags = 0;  // its own CQE: CQE_SKIP_SUCCESS would turn the drain away
  int master = 0, slave = 0;
  if (!Reap(ring->get(), 2, [&](uint64_t ud, int res) {
        (ud == (tag | kMasterBit) ? master : slave) = res;
      })) {
    std::fprintf(stderr, "ublk_mem_target: a drained fused READ never completed\n");
    return std::nullopt;
  }
  if (slave != master) {
    std::fprintf(stderr, "ublk_mem_target: a drained fused READ: slave %d, master %d\n", slave,
                 master);
    return -EIO;
  }
  return master;
}

// --- socket slaves, each on a ring of its own (the master may be issued
// from any ring, as buffer registration may), so the queue's ring sees
// nothing but its own requests ----------------------------------------------

// A connected TCP pair over loopback (SEND_ZC needs TCP: unix sockets do
// not take it). Closed on destruction.
struct TcpPair {
  int ours = -1;
  int peer = -1;
  TcpPair() {
    const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listener, 1) != 0 ||
        getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      if (listener >= 0) close(listener);
      return;
    }
    ours = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ours >= 0 && connect(ours, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      peer = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    }
    close(listener);
  }
  ~TcpPair() {
    if (ours >= 0) close(ours);
    if (peer >= 0) close(peer);
  }
  bool ok() const { return ours >= 0 && peer >= 0; }
};

// The master of a fused command on `tag` whose slave is `slave_op` on
// `fd`: `len` bytes from or into the start of the request's pages.
void PrepFusedSocket(io_uring_sqe* sqe, int char_fd, uint16_t tag, uint8_t slave_op, int fd,
                     uint32_t len) {
  io_uring_sqe* slave = PrepMaster(sqe, char_fd, tag);
  switch (slave_op) {
    case IORING_OP_RECV: io_uring_prep_recv(slave, fd, nullptr, len, MSG_WAITALL); break;
    // All of it or a failure, as ublkgw sends (a short send ends the slave).
    case IORING_OP_SEND:
      io_uring_prep_send(slave, fd, nullptr, len, MSG_NOSIGNAL | MSG_WAITALL);
      break;
    default: io_uring_prep_send_zc(slave, fd, nullptr, len, MSG_NOSIGNAL | MSG_WAITALL, 0); break;
  }
  slave->flags = slave_op == IORING_OP_SEND_ZC ? 0 : IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(slave, tag | kSlaveBit);
}

// Every CQE of `ring` until `done` says so, or 10 s pass (false).
template <typename Seen>
bool ReapUntil(io_uring* ring, Seen seen) {
  io_uring_submit(ring);
  for (;;) {
    __kernel_timespec deadline{.tv_sec = 10, .tv_nsec = 0};
    io_uring_cqe* cqe = nullptr;
    const int ret = io_uring_wait_cqe_timeout(ring, &cqe, &deadline);
    if (ret == -EINTR) continue;
    if (ret != 0) return false;
    const bool done = seen(*cqe);
    io_uring_cqe_seen(ring, cqe);
    if (done) return true;
  }
}

// A READ request filled by a fused RECV slave from a socket whose peer
// sends the disk's bytes: the master's result (the application then reads
// what came over the socket).
std::optional<int> ReadFromSocket(int char_fd, uint16_t tag, int disk_fd, uint32_t len,
                                  uint64_t off) {
  TcpPair pair;
  auto ring = Ring::Create(4, IORING_SETUP_SQE128);
  std::vector<uint8_t> bytes(len);
  if (!pair.ok() || !ring.ok() ||
      pread(disk_fd, bytes.data(), len, static_cast<off_t>(off)) != static_cast<ssize_t>(len)) {
    std::fprintf(stderr, "ublk_mem_target: the RECV slave's set-up failed\n");
    return std::nullopt;
  }
  std::thread sender([&] { (void)send(pair.peer, bytes.data(), len, MSG_NOSIGNAL); });
  PrepFusedSocket(io_uring_get_sqe(ring->get()), char_fd, tag, IORING_OP_RECV, pair.ours, len);
  int master = 1;
  const bool reaped = ReapUntil(ring->get(), [&](const io_uring_cqe& cqe) {
    if (cqe.user_data == (tag | kMasterBit)) master = cqe.res;
    return cqe.user_data == (tag | kMasterBit);
  });
  shutdown(pair.peer, SHUT_RDWR);  // a sender still blocked (the slave failed) returns
  sender.join();
  if (!reaped) return std::nullopt;
  return master;
}

// A WRITE request drained by a fused SEND (or SEND_ZC) slave into a socket
// whose peer writes what it gets to the disk: the master's result. A
// SEND_ZC slave posts its own result and then its notification, and the
// master comes with the byte count; all three must come.
std::optional<int> WriteToSocket(int char_fd, uint16_t tag, int disk_fd, uint32_t len,
                                 uint64_t off, bool zero_copy) {
  TcpPair pair;
  auto ring = Ring::Create(4, IORING_SETUP_SQE128);
  if (!pair.ok() || !ring.ok()) {
    std::fprintf(stderr, "ublk_mem_target: the SEND slave's set-up failed\n");
    return std::nullopt;
  }
  std::vector<uint8_t> got(len);
  ssize_t received = 0;
  std::thread receiver([&] { received = recv(pair.peer, got.data(), len, MSG_WAITALL); });
  PrepFusedSocket(io_uring_get_sqe(ring->get()), char_fd, tag,
                  zero_copy ? IORING_OP_SEND_ZC : IORING_OP_SEND, pair.ours, len);
  int master = 1, slave_result = 1;
  bool notified = !zero_copy, slave_posted = !zero_copy, master_seen = false;
  bool flags_right = true;  // F_MORE on the slave's result only: the master's is final
  const bool reaped = ReapUntil(ring->get(), [&](const io_uring_cqe& cqe) {
    if (cqe.user_data == (tag | kMasterBit)) {
      master = cqe.res;
      master_seen = true;
      flags_right = flags_right && (cqe.flags & IORING_CQE_F_MORE) == 0;
    } else if ((cqe.flags & IORING_CQE_F_NOTIF) != 0) {
      notified = true;
    } else {
      slave_result = cqe.res;
      slave_posted = true;
      flags_right = flags_right && (cqe.flags & IORING_CQE_F_MORE) != 0;
    }
    return master_seen && notified && slave_posted;
  });
  shutdown(pair.ours, SHUT_RDWR);  // a receiver still waiting (the slave failed) returns
  receiver.join();
  if (!reaped) {
    std::fprintf(stderr, "ublk_mem_target: a fused %s: master %s, slave %s, notification %s\n",
                 zero_copy ? "SEND_ZC" : "SEND", master_seen ? "came" : "missing",
                 slave_posted ? "came" : "missing", notified ? "came" : "missing");
    return std::nullopt;
  }
  if (zero_copy && (slave_result != master || !flags_right)) {
    std::fprintf(stderr,
                 "ublk_mem_target: a fused SEND_ZC: slave %d, master %d (IORING_CQE_F_MORE %s)\n",
                 slave_result, master, flags_right ? "right" : "on the wrong CQE");
    return -EIO;
  }
  if (received != static_cast<ssize_t>(len) ||
      pwrite(disk_fd, got.data(), len, static_cast<off_t>(off)) != static_cast<ssize_t>(len)) {
    return -EIO;
  }
  return master;
}

// A fused RECV slave waiting on `pair`'s silent socket, then its ring exits
// or (`cancel`) an ASYNC_CANCEL finds the slave. Either way the request's
// pages must come back (else the request never completes and the
// application's read hangs); a cancelled slave fails its master with
// ECANCELED. The caller keeps the pair open until it stops serving, so
// nothing but the ring's exit or the cancel can end the slave.
bool AbandonedRecv(int char_fd, uint16_t tag, uint32_t len, bool cancel, TcpPair& pair) {
  auto ring = Ring::Create(4, IORING_SETUP_SQE128);
  if (!pair.ok() || !ring.ok()) {
    std::fprintf(stderr, "ublk_mem_target: the abandoned RECV's set-up failed\n");
    return false;
  }
  PrepFusedSocket(io_uring_get_sqe(ring->get()), char_fd, tag, IORING_OP_RECV, pair.ours, len);
  io_uring_submit(ring->get());  // issued at once: the slave now waits for data
  io_uring_cqe* early = nullptr;
  if (io_uring_peek_cqe(ring->get(), &early) == 0) {
    std::fprintf(stderr, "ublk_mem_target: a RECV slave on a silent socket completed: %d\n",
                 early->res);
    return false;
  }
  if (!cancel) return true;  // the ring exits with it in flight (Ring's destructor)
  io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
  io_uring_prep_cancel64(sqe, tag | kSlaveBit, 0);
  io_uring_sqe_set_data64(sqe, kNopData);
  int master = 1, slave = 1, canceller = 1;
  int seen = 0;
  const bool reaped = ReapUntil(ring->get(), [&](const io_uring_cqe& cqe) {
    if (cqe.user_data == (tag | kMasterBit)) master = cqe.res;
    if (cqe.user_data == (tag | kSlaveBit)) slave = cqe.res;
    if (cqe.user_data == kNopData) canceller = cqe.res;
    return ++seen == 3;
  });
  if (!reaped || master != -ECANCELED || slave != -ECANCELED || canceller != 0) {
    std::fprintf(stderr,
                 "ublk_mem_target: a cancelled RECV slave: master %d, slave %d, cancel %d; want "
                 "%d, %d, 0\n",
                 master, slave, canceller, -ECANCELED, -ECANCELED);
    return false;
  }
  return true;
}

// The --fused data path of ServeQueue.
int ServeQueueFused(int char_fd, uint16_t depth, int disk_fd, uint64_t disk_size) {
  auto descs = IoDescMap::Map(char_fd, 0, depth);
  if (!descs.ok()) return Fail("map descriptors", descs.status());
  auto ring = Ring::Create(depth * 2, IORING_SETUP_SQE128);
  if (!ring.ok()) return Fail("queue ring", ring.status());
  for (uint16_t tag = 0; tag < depth; ++tag) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
    PrepIoCmd(sqe, char_fd, kIoFetchReq, 0, tag, 0, 0);
    io_uring_sqe_set_data64(sqe, tag);
  }
  std::vector<uint32_t> want(depth);
  bool direction_checked = false;
  int socket_reads = 0, socket_writes = 0;
  std::vector<std::unique_ptr<TcpPair>> silent;  // the abandoned RECVs' sockets, kept open
  int live = depth;
  int errors = 0;
  auto commit = [&](uint16_t tag, int32_t result) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
    PrepIoCmd(sqe, char_fd, kIoCommitAndFetchReq, 0, tag, result, 0);
    io_uring_sqe_set_data64(sqe, tag);
  };
  // A master's result: all the request's bytes moved, or the request fails.
  auto commit_moved = [&](uint16_t tag, int res) {
    commit(tag, res == static_cast<int>(want[tag]) ? res : (res < 0 ? res : -EIO));
  };
  while (live > 0) {
    uint64_t user_data = 0;
    const int res = NextResult(ring->get(), &user_data);
    const auto tag = static_cast<uint16_t>(user_data & 0xffff);
    if (user_data & kMasterBit) {  // the slave moved the data: commit
      commit_moved(tag, res);
      continue;
    }
    if (!Fetched(res, tag, live, errors)) continue;
    const ublksrv_io_desc iod = descs->Get(tag);
    uint64_t off = 0, len = 0;
    if (!RequestRange(iod, disk_size, off, len)) {
      commit(tag, -EIO);
      continue;
    }
    // After the first read: socket slaves serve the first two writes and
    // the next read; the two reads after it first see a RECV slave on
    // their pages abandoned (its ring exits; it is cancelled).
    const uint8_t op = IodOp(iod);
    if (len > 0 && ((op == kIoOpRead && direction_checked && socket_reads < 3) ||
                    (op == kIoOpWrite && socket_writes < 2))) {
      const auto n = static_cast<uint32_t>(len);
      std::optional<int> moved;
      bool served = false;
      if (op == kIoOpWrite) {
        const bool zc = socket_writes++ == 1;
        moved = WriteToSocket(char_fd, tag, disk_fd, n, off, zc);
        served = true;
        if (moved == static_cast<int>(n)) {
          std::printf(zc ? "fused: a SEND_ZC slave drains a WRITE request into a TCP socket "
                           "(the slave's result with F_MORE, its notification, the master's "
                           "final result)\n"
                         : "fused: a SEND slave drains a WRITE request into a TCP socket\n");
        }
      } else if (socket_reads++ == 0) {
        moved = ReadFromSocket(char_fd, tag, disk_fd, n, off);
        served = true;
        if (moved == static_cast<int>(n)) {
          std::printf("fused: a RECV slave fills a READ request from a TCP socket\n");
        }
      } else if (AbandonedRecv(char_fd, tag, n, /*cancel=*/socket_reads == 3,
                               *silent.emplace_back(std::make_unique<TcpPair>()))) {
        std::printf(socket_reads == 3
                        ? "fused: a cancelled RECV slave fails its master with ECANCELED\n"
                        : "fused: a ring exited with a RECV slave on a request's pages\n");
      } else {
        ++errors;
      }
      std::fflush(stdout);
      if (served) {
        want[tag] = n;
        if (moved != static_cast<int>(n)) ++errors;
        commit_moved(tag, moved.value_or(-EIO));
        continue;
      }
    }
    switch (op) {
      case kIoOpRead:
        if (!direction_checked) {
          // A READ request's pages may only be written into: lending them to
          // a WRITE (which reads them) must fail at import, touching nothing
          // (its target is past the disk's end, should it not).
          direction_checked = true;
          PrepFused(io_uring_get_sqe(ring->get()), char_fd, tag, disk_fd, IORING_OP_WRITE,
                    static_cast<uint32_t>(len), disk_size);
          uint64_t ud = 0;
          const int wrong = NextResult(ring->get(), &ud);
          if (ud != (tag | kMasterBit) || wrong != -EFAULT) {
            std::fprintf(stderr, "ublk_mem_target: a READ's pages lent to a WRITE: %d, want %d\n",
                         wrong, -EFAULT);
            ++errors;
          } else {
            std::printf("fused: a READ request's pages are not lent to a WRITE (EFAULT)\n");
          }
          // The slave's addr and len are an offset and a length inside the
          // request's data: a range one byte past its end fails at import.
          {
            io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
            PrepFused(sqe, char_fd, tag, disk_fd, IORING_OP_READ, static_cast<uint32_t>(len), 0);
            sqe[1].addr = 1;
            const int past = NextResult(ring->get(), &ud);
            if (ud != (tag | kMasterBit) || past != -EFAULT) {
              std::fprintf(stderr,
                           "ublk_mem_target: a slave one byte past the request's end: %d, want "
                           "%d\n",
                           past, -EFAULT);
              ++errors;
            } else {
              std::printf("fused: a slave past the request's end is refused (EFAULT)\n");
            }
          }
          if (!CheckOtherUblkMaster(char_fd, tag, disk_fd)) ++errors;
          if (!CheckShortSlave(ring->get(), char_fd, tag, disk_fd, disk_size, len)) ++errors;
          // The data itself moves under a drain: the master's own slave
          // must not count as something to wait for. On a ring of its own:
          // a ring that ever saw CQE_SKIP_SUCCESS refuses IOSQE_IO_DRAIN.
          want[tag] = static_cast<uint32_t>(len);
          const std::optional<int> drained =
              DrainedRead(char_fd, tag, disk_fd, want[tag], off);
          if (!drained) return 1;
          std::printf("fused: a drained fused READ completes (%d of %u bytes)\n", *drained,
                      want[tag]);
          std::fflush(stdout);
          if (*drained != static_cast<int>(want[tag])) ++errors;
          commit_moved(tag, *drained);
          break;
        }
        [[fallthrough]];
      case kIoOpWrite:
        want[tag] = static_cast<uint32_t>(len);
        PrepFused(io_uring_get_sqe(ring->get()), char_fd, tag, disk_fd,
                  op == kIoOpRead ? IORING_OP_READ : IORING_OP_WRITE,
                  static_cast<uint32_t>(len), off);
        break;
      case kIoOpFlush: commit(tag, 0); break;
      case kIoOpDiscard:
      case kIoOpWriteZeroes:
        commit(tag, fallocate(disk_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              static_cast<off_t>(off), static_cast<off_t>(len)) == 0
                        ? static_cast<int32_t>(len)
                        : -errno);
        break;
      default: commit(tag, -EOPNOTSUPP);
    }
  }
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
  const bool fused = argc > 3 && std::strcmp(argv[3], "--fused") == 0;
  std::vector<uint8_t> disk(fused ? 0 : size);
  int disk_fd = -1;
  if (fused) {
    disk_fd = memfd_create("ublk-mem-disk", 0);
    if (disk_fd < 0 || ftruncate(disk_fd, static_cast<off_t>(size)) != 0) {
      return Fail("memfd", ErrnoToStatus(errno, "memfd_create/ftruncate"));
    }
  }

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
  info.flags = kFCmdIoctlEncode | (fused ? kFSupportZeroCopy | kFFusedCmd : 0);
  auto added = ctrl->AddDev(info);
  if (!added.ok()) return Fail("ADD_DEV", added.status());
  const uint32_t id = added->dev_id;
  if (fused && !(added->flags & kFFusedCmd)) {
    std::fprintf(stderr, "ublk_mem_target: this kernel has no UBLK_F_FUSED_CMD\n");
    (void)ctrl->DelDev(id);
    return 1;
  }

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
  if (fused && !CheckFusedGuards(char_fd->get(), disk_fd)) {
    char_fd->Reset();
    (void)ctrl->DelDev(id);
    return 1;
  }
  int queue_rc = 1;
  std::thread queue([&] {
    queue_rc = fused ? ServeQueueFused(char_fd->get(), depth, disk_fd, size)
                     : ServeQueue(char_fd->get(), depth, disk);
  });

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
