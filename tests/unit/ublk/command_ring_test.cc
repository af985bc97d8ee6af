// CommandRing with commands the host can make hang: reads of an empty pipe.
// A command past its deadline is cancelled and reaped before Run returns,
// so the kernel never writes into the caller's memory afterwards, and a
// late completion is never taken for the next command's.
#include "ublk/command_ring.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "base/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw::ublk {
namespace {

using ::testing::HasSubstr;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::StatusIs;

struct Pipe {
  Pipe() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) == 0) {
      read_end.Reset(fds[0]);
      write_end.Reset(fds[1]);
    }
  }
  void Put(const std::string& s) { ASSERT_EQ(write(write_end.get(), s.data(), s.size()), ssize_t(s.size())); }
  UniqueFd read_end, write_end;
};

// Reads up to the buffer's size from `fd` into the command's memory.
auto ReadInto(int fd, size_t n) {
  return [fd, n](io_uring_sqe* sqe, void* memory) { io_uring_prep_read(sqe, fd, memory, n, 0); };
}

TEST(CommandRingTest, ACommandThatCompletesFillsTheBuffer) {
  auto ring = CommandRing::Create(0);
  ASSERT_THAT(ring, IsOk());
  Pipe p;
  p.Put("hello");
  uint8_t buf[5] = {};
  auto res = ring->Run(ReadInto(p.read_end.get(), 5), buf, absl::Seconds(5));
  ASSERT_THAT(res, IsOk());
  EXPECT_EQ(*res, 5);
  EXPECT_EQ(std::string(buf, buf + 5), "hello");
}

TEST(CommandRingTest, ACommandPastItsDeadlineIsCancelledAndNeverWritesLater) {
  auto ring = CommandRing::Create(0);
  ASSERT_THAT(ring, IsOk());
  Pipe p;
  uint8_t buf[5] = {'a', 'a', 'a', 'a', 'a'};
  EXPECT_THAT(ring->Run(ReadInto(p.read_end.get(), 5), buf, absl::Milliseconds(50)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("cancelled")));
  EXPECT_EQ(ring->abandoned(), 0u);
  // The data arrives now: the cancelled read must not take it, nor touch
  // the caller's buffer; the next command gets it, with its own result.
  p.Put("later");
  EXPECT_EQ(std::string(buf, buf + 5), "aaaaa");
  uint8_t next[5] = {};
  auto res = ring->Run(ReadInto(p.read_end.get(), 5), next, absl::Seconds(5));
  ASSERT_THAT(res, IsOk());
  EXPECT_EQ(*res, 5);
  EXPECT_EQ(std::string(next, next + 5), "later");
}

// A command whose cancel is not seen within the grace period is
// abandoned: its memory stays with the ring, and its completion, when it
// comes, is reaped by a later command rather than taken for that one.
TEST(CommandRingTest, AnAbandonedCommandsCompletionIsNotTakenForTheNext) {
  auto ring = CommandRing::Create(0, /*cancel_grace=*/absl::ZeroDuration());
  ASSERT_THAT(ring, IsOk());
  Pipe slow, fast;
  uint8_t buf[4] = {};
  EXPECT_THAT(ring->Run(ReadInto(slow.read_end.get(), 4), buf, absl::Milliseconds(20)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("still in the kernel")));
  EXPECT_EQ(ring->abandoned(), 1u);
  fast.Put("ok");
  uint8_t next[2] = {};
  auto res = ring->Run(ReadInto(fast.read_end.get(), 2), next, absl::Seconds(5));
  ASSERT_THAT(res, IsOk());
  EXPECT_EQ(*res, 2);
  EXPECT_EQ(std::string(next, next + 2), "ok");
  // The abandoned read's cancellation completes; a later command reaps it.
  fast.Put("!");
  uint8_t last[1] = {};
  ASSERT_THAT(ring->Run(ReadInto(fast.read_end.get(), 1), last, absl::Seconds(5)), IsOk());
  EXPECT_EQ(ring->abandoned(), 0u);
}

}  // namespace
}  // namespace ublkgw::ublk
