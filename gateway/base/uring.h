#ifndef UBLKGW_BASE_URING_H_
#define UBLKGW_BASE_URING_H_

#include <liburing.h>

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ublkgw {

// Owns one io_uring instance (its fd and its SQ/CQ mappings) and tears it
// down on destruction. Move-only; the ring's memory does not move with the
// object, so pointers liburing hands out stay valid across moves.
//
// Threads: a Ring belongs to one thread at a time (DESIGN.md: one ring per
// queue worker; the control device has its own). Nothing here locks.
class Ring {
 public:
  // Creates a ring with `entries` SQ entries and io_uring_setup `flags`
  // (IORING_SETUP_SQE128 for URING_CMDs of ublk, for example).
  static absl::StatusOr<Ring> Create(unsigned entries, unsigned flags);

  io_uring* get() { return ring_.get(); }

  // Submits everything queued, then waits up to `timeout` for one
  // completion and returns it (still owned by the ring: call
  // io_uring_cqe_seen). DEADLINE_EXCEEDED if none arrives in time.
  absl::StatusOr<io_uring_cqe*> SubmitAndWait(absl::Duration timeout);

  // The kernel can wait for several completions with a shorter bound for
  // the first (IORING_FEAT_MIN_TIMEOUT, 6.12+).
  bool has_min_wait() const;
  // Submits everything queued and waits for `wait_nr` completions; once
  // `min_wait_us` have passed it returns as soon as there is one, and
  // after `timeout` with none. Needs has_min_wait(). Returns what
  // io_uring_enter does: the SQEs submitted, or -errno (-ETIME: none came).
  // liburing 2.3 has no call for this; it enters as liburing would
  // (through the registered ring fd if there is one).
  int SubmitAndWaitMin(unsigned wait_nr, const __kernel_timespec& timeout, unsigned min_wait_us);

 private:
  struct Closer {
    void operator()(io_uring* ring) const;
  };
  explicit Ring(std::unique_ptr<io_uring, Closer> ring) : ring_(std::move(ring)) {}

  std::unique_ptr<io_uring, Closer> ring_;
};

}  // namespace ublkgw

#endif  // UBLKGW_BASE_URING_H_
