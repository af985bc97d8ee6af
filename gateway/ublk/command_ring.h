// One io_uring that runs commands one at a time, synchronously, with a
// deadline, and never lets a command outlive the memory it uses: what the
// ublk control device needs (its URING_CMDs point the kernel at buffers it
// may write until the command completes).
//
// Each command gets a tag of its own as user_data, so a completion is only
// ever matched to its own command. Its buffer is a copy this object owns:
// the caller's memory is copied in before and out after, only once the
// kernel is done with the command. A command past its deadline is
// cancelled and its completion reaped; if even the cancel does not
// complete within the grace period, the command is abandoned: its memory
// stays alive here until its completion arrives (reaped by a later
// command) or the ring is torn down.
//
// Threads: not thread-safe; one caller at a time.
// Teardown: the ring goes first; the memory of commands abandoned and
// never completed is kept for the life of the process (a kernel worker may
// still write into it after the ring's teardown).
#ifndef UBLKGW_UBLK_COMMAND_RING_H_
#define UBLKGW_UBLK_COMMAND_RING_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/uring.h"

namespace ublkgw::ublk {

class CommandRing {
 public:
  // `flags`: io_uring_setup flags (IORING_SETUP_SQE128 for ublk's control
  // commands). `cancel_grace`: how long a cancelled command may take to
  // complete before it is abandoned (zero: abandoned at once, the cancel
  // submitted with the next command).
  static absl::StatusOr<CommandRing> Create(unsigned flags,
                                            absl::Duration cancel_grace = absl::Seconds(5));

  // Runs one command: `prep` fills the SQE (and may point it at `memory`, a
  // copy of `buffer` that lives as long as the command); Run sets its
  // user_data. Returns the completion's result (>= 0, or -errno from the
  // kernel), and then `buffer` holds what the command left in `memory`.
  // DEADLINE_EXCEEDED when it did not complete within `timeout` (it was
  // cancelled; `buffer` is untouched); other errors of the ring itself as
  // a Status.
  absl::StatusOr<int> Run(absl::FunctionRef<void(io_uring_sqe* sqe, void* memory)> prep,
                          std::span<uint8_t> buffer, absl::Duration timeout);

  CommandRing(CommandRing&&) = default;
  CommandRing& operator=(CommandRing&&) = default;
  ~CommandRing();

  // Commands abandoned and not completed yet.
  size_t abandoned() const { return abandoned_.size(); }

 private:
  CommandRing(Ring ring, absl::Duration cancel_grace)
      : ring_(std::make_unique<Ring>(std::move(ring))), cancel_grace_(cancel_grace) {}

  // Waits until `deadline` for the completion of `tag`, reaping (and
  // forgetting) abandoned commands' completions meanwhile. Returns its
  // result, or DEADLINE_EXCEEDED.
  absl::StatusOr<int> WaitFor(uint64_t tag, absl::Time deadline);

  // Declared before ring_: destroyed after it, once nothing can use them.
  std::map<uint64_t, std::vector<uint8_t>> abandoned_;
  std::unique_ptr<Ring> ring_;
  absl::Duration cancel_grace_;
  uint64_t next_tag_ = 1;
};

}  // namespace ublkgw::ublk

#endif  // UBLKGW_UBLK_COMMAND_RING_H_
