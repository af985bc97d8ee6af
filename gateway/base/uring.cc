#include "base/uring.h"

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

}  // namespace ublkgw
