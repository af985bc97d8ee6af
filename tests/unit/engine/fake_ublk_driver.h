// A fake ublk driver for one device, so tests run the real engine::Device,
// with its real queue workers, on a host without ublk. Each queue is a
// FakeUblkKernel (fake_ublk_queue.h); the control commands act on them as
// the kernel would: START_DEV and END_USER_RECOVERY wait for every queue's
// fetches, STOP_DEV waits for the requests in flight and then aborts the
// fetches. A test can make a command fail, and sees what was asked.
//
// Threads: the Device calls the driver from its callers' threads; the test
// reads the state from its own. Everything is under one mutex, except the
// queues, which have their own.
#ifndef UBLKGW_TESTS_UNIT_ENGINE_FAKE_UBLK_DRIVER_H_
#define UBLKGW_TESTS_UNIT_ENGINE_FAKE_UBLK_DRIVER_H_

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "engine/fake_ublk_queue.h"
#include "engine/ublk_driver.h"

namespace ublkgw::engine::testing {

struct FakeUblk {
  absl::Mutex mu;
  uint64_t features = ublk::kFUserRecovery | ublk::kFUserRecoveryReissue | ublk::kFUpdateSize;
  std::set<uint32_t> taken_ids;     // ADD_DEV of these: EEXIST
  uint64_t keep_flags = ~0ull;      // ADD_DEV keeps only these flags
  uint16_t cpus = 64;               // ADD_DEV gives at most this many queues
  std::map<std::string, absl::Status> fail;  // command name -> its error
  // The device, once added (or left by a previous daemon).
  bool added = false;
  ublk::ublksrv_ctrl_dev_info info{};
  ublk::ublk_params params{};
  bool started = false, stopped = false, deleted = false, queues_open = false;
  uint64_t sectors = 0;  // UPDATE_SIZE's
  std::vector<std::unique_ptr<FakeUblkKernel>> queues;

  FakeUblkKernel& queue(uint16_t q) { return *queues[q]; }
  // Makes the queues for `info` (as ADD_DEV does).
  void MakeQueues() {
    queues.clear();
    for (uint16_t q = 0; q < info.nr_hw_queues; ++q) {
      queues.push_back(std::make_unique<FakeUblkKernel>(info.queue_depth));
    }
  }
};

class FakeUblkDriver final : public UblkDriver {
 public:
  explicit FakeUblkDriver(std::shared_ptr<FakeUblk> state) : s_(std::move(state)) {}

  absl::StatusOr<uint64_t> GetFeatures() override {
    absl::MutexLock lock(&s_->mu);
    if (auto e = Failure("GET_FEATURES"); !e.ok()) return e;
    return s_->features;
  }
  absl::StatusOr<ublk::ublksrv_ctrl_dev_info> AddDev(
      const ublk::ublksrv_ctrl_dev_info& info) override {
    absl::MutexLock lock(&s_->mu);
    if (auto e = Failure("ADD_DEV"); !e.ok()) return e;
    if (s_->taken_ids.contains(info.dev_id)) return absl::AlreadyExistsError("EEXIST");
    s_->added = true;
    s_->info = info;
    s_->info.flags &= s_->keep_flags;
    s_->info.nr_hw_queues = std::min(info.nr_hw_queues, s_->cpus);
    s_->MakeQueues();
    return s_->info;
  }
  absl::Status SetParams(uint32_t, const ublk::ublk_params& params) override {
    absl::MutexLock lock(&s_->mu);
    if (auto e = Failure("SET_PARAMS"); !e.ok()) return e;
    s_->params = params;
    return absl::OkStatus();
  }
  absl::StatusOr<ublk::ublk_params> GetParams(uint32_t) override {
    absl::MutexLock lock(&s_->mu);
    if (!s_->added) return absl::NotFoundError("no device");
    return s_->params;
  }
  absl::StatusOr<ublk::ublksrv_ctrl_dev_info> GetDevInfo(uint32_t) override {
    absl::MutexLock lock(&s_->mu);
    if (!s_->added) return absl::NotFoundError("no device");
    return s_->info;
  }
  absl::Status StartDev(uint32_t, int32_t) override {
    if (absl::Status s = AwaitFetches("START_DEV"); !s.ok()) return s;
    absl::MutexLock lock(&s_->mu);
    s_->started = true;
    return absl::OkStatus();
  }
  absl::Status StopDev(uint32_t) override {
    {
      absl::MutexLock lock(&s_->mu);
      if (auto e = Failure("STOP_DEV"); !e.ok()) return e;
    }
    // The kernel waits for the requests in flight (the Device bounds the
    // wait by failing them), then aborts every fetch.
    for (auto& q : Queues()) q->WaitFetching(q->depth(), absl::Seconds(60));
    for (auto& q : Queues()) q->StopDevice();
    absl::MutexLock lock(&s_->mu);
    s_->stopped = true;
    return absl::OkStatus();
  }
  absl::Status DelDev(uint32_t) override {
    absl::MutexLock lock(&s_->mu);
    if (s_->queues_open) return absl::InternalError("DEL_DEV with /dev/ublkcN still open");
    s_->deleted = true;
    return absl::OkStatus();
  }
  absl::Status UpdateSize(uint32_t, uint64_t sectors) override {
    absl::MutexLock lock(&s_->mu);
    if (auto e = Failure("UPDATE_SIZE"); !e.ok()) return e;
    s_->sectors = sectors;
    return absl::OkStatus();
  }
  absl::Status StartUserRecovery(uint32_t) override {
    absl::MutexLock lock(&s_->mu);
    if (auto e = Failure("START_USER_RECOVERY"); !e.ok()) return e;
    s_->MakeQueues();  // the old server's queues are gone
    return absl::OkStatus();
  }
  absl::Status EndUserRecovery(uint32_t, int32_t) override {
    return AwaitFetches("END_USER_RECOVERY");
  }
  absl::Status OpenQueues(uint32_t) override {
    absl::MutexLock lock(&s_->mu);
    if (auto e = Failure("OPEN"); !e.ok()) return e;
    s_->queues_open = true;
    return absl::OkStatus();
  }
  std::unique_ptr<UblkQueue> MakeQueue(uint16_t q_id, uint16_t) override {
    absl::MutexLock lock(&s_->mu);
    return s_->queue(q_id).MakeQueue();
  }
  void CloseQueues() override {
    absl::MutexLock lock(&s_->mu);
    s_->queues_open = false;
  }

 private:
  absl::Status Failure(const std::string& command) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s_->mu) {
    auto it = s_->fail.find(command);
    return it == s_->fail.end() ? absl::OkStatus() : it->second;
  }
  std::vector<FakeUblkKernel*> Queues() {
    absl::MutexLock lock(&s_->mu);
    std::vector<FakeUblkKernel*> out;
    for (auto& q : s_->queues) out.push_back(q.get());
    return out;
  }
  absl::Status AwaitFetches(const std::string& command) {
    {
      absl::MutexLock lock(&s_->mu);
      if (auto e = Failure(command); !e.ok()) return e;
    }
    for (auto* q : Queues()) {
      if (!q->WaitFetching(q->depth(), absl::Seconds(10))) {
        return absl::DeadlineExceededError(command + ": a queue never fetched");
      }
    }
    return absl::OkStatus();
  }

  std::shared_ptr<FakeUblk> s_;
};

}  // namespace ublkgw::engine::testing

#endif  // UBLKGW_TESTS_UNIT_ENGINE_FAKE_UBLK_DRIVER_H_
