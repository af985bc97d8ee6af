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

 private:
  struct Closer {
    void operator()(io_uring* ring) const;
  };
  explicit Ring(std::unique_ptr<io_uring, Closer> ring) : ring_(std::move(ring)) {}

  std::unique_ptr<io_uring, Closer> ring_;
};

}  // namespace ublkgw

#endif  // UBLKGW_BASE_URING_H_
