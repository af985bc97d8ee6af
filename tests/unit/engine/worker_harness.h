// Runs the real QueueWorker on the host: its ublk side is a FakeUblkKernel,
// its NBD connection one end of a socketpair whose other end a scripted
// fake server (tests/unit/nbd/fake_server.h) answers, already past the
// handshake. Reconnects get the next script of `servers`.
#ifndef UBLKGW_TESTS_UNIT_ENGINE_WORKER_HARNESS_H_
#define UBLKGW_TESTS_UNIT_ENGINE_WORKER_HARNESS_H_

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/fake_ublk_queue.h"
#include "engine/queue_worker.h"
#include "engine/worker_scripts.h"
#include "gtest/gtest.h"
#include "nbd/fake_server.h"
#include "nbd/wire.h"

namespace ublkgw::engine::testing {

using Script = nbd::testing::FakeServer::Script;

inline nbd::ExportInfo TestExport(nbd::HeaderMode mode = nbd::HeaderMode::kSimple,
                                  uint64_t size = 1 << 20) {
  nbd::ExportInfo info;
  info.size = size;
  info.flags = nbd::kFlagHasFlags | nbd::kFlagSendFlush | nbd::kFlagSendFua |
               nbd::kFlagSendTrim | nbd::kFlagSendWriteZeroes;
  info.mode = mode;
  return info;
}

class WorkerHarness {
 public:
  static constexpr uint32_t kMaxIoBytes = 64 * 1024;

  struct Options {
    uint16_t depth = 4;
    nbd::ExportInfo info = TestExport();
    ReconnectPolicy reconnect;
    // Scripts for connections after the first; none: no reconnecting (a
    // failed connection fails I/O for good), unless `reconnect_fails`:
    // then every attempt after the scripts fails.
    std::vector<Script> reconnect_scripts;
    bool reconnect_fails = false;
    // SO_SNDBUF of the worker's first socket (0: the default), to make
    // large sends come up short.
    int send_buffer = 0;
    // Copy unless plan.zero_copy: then the fake kernel lends buffers of
    // its own as the requests' pages (fake_ublk_queue.h), through the table
    // or, with BufferRegistration::kFused, to each fused operation.
    DataPathPlan plan;
    uint32_t max_io_bytes = kMaxIoBytes;  // the largest request
    // Batched (plan.batch): PREP_IO_CMDS fails (FakeUblkKernel::FailPrep).
    bool batch_prep_fails = false;
  };

  WorkerHarness(Script first, Options options)
      : options_(std::move(options)),
        kernel_(options_.depth, options_.plan.zero_copy ? options_.max_io_bytes : 0) {
    kernel_.set_fused(options_.plan.zero_copy &&
                      options_.plan.registration == BufferRegistration::kFused);
    kernel_.set_batch(options_.plan.batch);
    if (options_.batch_prep_fails) kernel_.FailPrep();
    servers_.push_back(std::make_unique<nbd::testing::FakeServer>(std::move(first)));
    for (auto& s : options_.reconnect_scripts) later_.push_back(std::move(s));
    QueueConfig config;
    config.q_id = 0;
    config.depth = options_.depth;
    config.max_io_bytes = options_.max_io_bytes;
    config.plan = options_.plan;
    config.reconnect = options_.reconnect;
    config.reconnect.backoff_min = absl::Milliseconds(1);
    config.reconnect.backoff_max = absl::Milliseconds(10);
    if (!later_.empty() || options_.reconnect_fails) {
      config.connector = [this](uint64_t, int) -> absl::StatusOr<UniqueFd> {
        absl::MutexLock lock(&mu_);
        ++connects_;
        if (later_.empty()) return absl::UnavailableError("no more test servers");
        servers_.push_back(std::make_unique<nbd::testing::FakeServer>(std::move(later_.front())));
        later_.pop_front();
        return servers_.back()->TakeClientStream().Release();
      };
    }
    UniqueFd socket = servers_.front()->TakeClientStream().Release();
    if (options_.send_buffer > 0) {
      setsockopt(socket.get(), SOL_SOCKET, SO_SNDBUF, &options_.send_buffer,
                 sizeof(options_.send_buffer));
    }
    worker_ = std::make_unique<QueueWorker>(config, kernel_.MakeQueue(), options_.info,
                                            std::move(socket));
    thread_ = std::thread([this] {
      run_status_ = worker_->Run();
      run_done_.Notify();
    });
    ready_ = worker_->WaitReady(absl::Seconds(10));
  }

  ~WorkerHarness() { Stop(); }

  // Stops the device (every fetch aborted) and joins the worker.
  void Stop() {
    if (!thread_.joinable()) return;
    kernel_.StopDevice();
    worker_->Abort();  // a request still waiting for a server fails
    thread_.join();
    worker_.reset();
    absl::MutexLock lock(&mu_);
    servers_.clear();
  }

  const absl::Status& ready() const { return ready_; }
  // Whether Run() returned within `timeout`.
  bool WaitRunDone(absl::Duration timeout = absl::Seconds(10)) {
    return run_done_.WaitForNotificationWithTimeout(timeout);
  }
  // What Run() returned; only once WaitRunDone() said it did.
  const absl::Status& run_status() const { return run_status_; }
  FakeUblkKernel& kernel() { return kernel_; }
  QueueWorker& worker() { return *worker_; }
  int connects() {
    absl::MutexLock lock(&mu_);
    return connects_;
  }

  // Issues one request on `tag` and waits for its commit.
  std::optional<Commit> Do(uint16_t tag, uint8_t op, uint64_t offset, uint32_t length,
                           const std::string& data = "", uint32_t flags = 0) {
    if (!kernel_.Issue(tag, op, offset, length, data, flags)) return std::nullopt;
    return kernel_.WaitCommit(tag);
  }

 private:
  Options options_;
  FakeUblkKernel kernel_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<nbd::testing::FakeServer>> servers_;
  std::deque<Script> later_ ABSL_GUARDED_BY(mu_);
  int connects_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<QueueWorker> worker_;
  std::thread thread_;
  absl::Status run_status_;
  absl::Notification run_done_;
  absl::Status ready_;
};

// Polls `cond` until it holds, for `deadline` at most: for what the worker
// does after the step a test can wait on (its link state, the RECV it arms
// after a commit) and has no notification of its own.
template <typename Cond>
bool WaitFor(Cond cond, absl::Duration deadline = absl::Seconds(10)) {
  const absl::Time end = absl::Now() + deadline;
  while (!cond()) {
    if (absl::Now() > end) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

// The RECVs the worker has armed so far.
inline uint64_t Recvs(WorkerHarness& h) { return h.worker().stats().Snapshot().recvs; }
// The ACKs it has pushed out at once (nbd::AckNow).
inline uint64_t AcksPushed(WorkerHarness& h) {
  return h.worker().stats().Snapshot().acks_pushed;
}

// A worker with `options` (structured replies) reads 8 KiB that the
// server answers in two chunks, sending the second only once the worker
// has pushed an ACK for the first (scripts::InTwoChunks); then a read in
// one chunk and a write, which push none.
inline void ExpectAReplyInPartsAcknowledgedAtOnce(WorkerHarness::Options options) {
  std::atomic<WorkerHarness*> harness{nullptr};
  WorkerHarness h(scripts::InTwoChunks([&harness] {
                    EXPECT_TRUE(WaitFor([&harness] {
                      WorkerHarness* p = harness.load();
                      return p != nullptr && AcksPushed(*p) == 1;
                    })) << "the first chunk was not acknowledged at once";
                  }),
                  std::move(options));
  harness = &h;
  ASSERT_TRUE(h.ready().ok()) << h.ready();
  auto r = h.Do(0, scripts::kRead, 8192, 8192);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->result, 8192);
  EXPECT_TRUE(r->data == scripts::Expected(8192, 4096) + std::string(4096, '\0'));
  ASSERT_TRUE(h.Do(1, scripts::kRead, 0, 4096).has_value());
  ASSERT_TRUE(h.Do(2, scripts::kWrite, 0, 4096, scripts::Fill(4096, 'w')).has_value());
  EXPECT_EQ(AcksPushed(h), 1u);
}

}  // namespace ublkgw::engine::testing

#endif  // UBLKGW_TESTS_UNIT_ENGINE_WORKER_HARNESS_H_
