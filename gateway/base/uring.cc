#include "base/uring.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace ublkgw {

void Ring::Closer::operator()(io_uring* ring) const {
  io_uring_queue_exit(ring);
  delete ring;
}

absl::StatusOr<Ring> Ring::Create(unsigned entries, unsigned flags) {
  auto ring = std::unique_ptr<io_uring, Closer>(new io_uring{});
  io_uring_params params;
  std::memset(&params, 0, sizeof(params));
  params.flags = flags;
  int ret = io_uring_queue_init_params(entries, ring.get(), &params);
  if (ret < 0) {
    // Nothing to tear down: release without calling io_uring_queue_exit.
    delete ring.release();
    return ErrnoToStatus(-ret, absl::StrCat("io_uring_setup(entries=", entries,
                                            ", flags=0x", absl::Hex(flags), ")"));
  }
  return Ring(std::move(ring));
}

absl::StatusOr<io_uring_cqe*> Ring::SubmitAndWait(absl::Duration timeout) {
  int ret = io_uring_submit(ring_.get());
  if (ret < 0) return ErrnoToStatus(-ret, "io_uring_submit");
  const int64_t ns = std::max<int64_t>(0, absl::ToInt64Nanoseconds(timeout));
  __kernel_timespec ts{ns / 1'000'000'000, ns % 1'000'000'000};
  io_uring_cqe* cqe = nullptr;
  for (;;) {
    ret = io_uring_wait_cqe_timeout(ring_.get(), &cqe, &ts);
    if (ret == -EINTR) continue;
    break;
  }
  if (ret == -ETIME) {
    return absl::DeadlineExceededError(
        absl::StrCat("no io_uring completion within ", absl::FormatDuration(timeout)));
  }
  if (ret < 0) return ErrnoToStatus(-ret, "io_uring_wait_cqe");
  return cqe;
}

namespace {
constexpr unsigned kFeatMinTimeout = 1U << 15;  // IORING_FEAT_MIN_TIMEOUT, 6.12
constexpr uint8_t kIntFlagRegRing = 1;          // liburing 2.3's INT_FLAG_REG_RING

// io_uring_getevents_arg with the field 6.12 made of its padding.
struct GeteventsArg {
  uint64_t sigmask;
  uint32_t sigmask_sz;
  uint32_t min_wait_usec;
  uint64_t ts;
};
static_assert(sizeof(GeteventsArg) == sizeof(io_uring_getevents_arg));
}  // namespace

bool Ring::has_min_wait() const { return (ring_->features & kFeatMinTimeout) != 0; }

int Ring::SubmitAndWaitMin(unsigned wait_nr, const __kernel_timespec& timeout,
                           unsigned min_wait_us) {
  io_uring* ring = ring_.get();
  // What liburing does before it enters: publish the SQEs queued since the
  // last submit (its SQ array maps slot i to SQE i from setup on).
  io_uring_sq& sq = ring->sq;
  if (sq.sqe_head != sq.sqe_tail) {
    sq.sqe_head = sq.sqe_tail;
    io_uring_smp_store_release(sq.ktail, sq.sqe_tail);
  }
  const unsigned to_submit = sq.sqe_tail - io_uring_smp_load_acquire(sq.khead);
  GeteventsArg arg{0, _NSIG / 8, min_wait_us, reinterpret_cast<uint64_t>(&timeout)};
  unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;
  int fd = ring->ring_fd;
  if (ring->int_flags & kIntFlagRegRing) {
    flags |= IORING_ENTER_REGISTERED_RING;
    fd = ring->enter_ring_fd;
  }
  const long ret = ::syscall(__NR_io_uring_enter, fd, to_submit, wait_nr, flags, &arg, sizeof(arg));
  return ret < 0 ? -errno : static_cast<int>(ret);
}

}  // namespace ublkgw
