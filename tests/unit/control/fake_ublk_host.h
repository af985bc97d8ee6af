// A ublk driver for host tests (control::UblkHost). The shared control
// device answers from what the test set (a device a previous daemon left).
// Create and Adopt wait, for the ids the test holds, until it lets them go,
// so a test can see what the manager does while a device is being made.
// Then they make no device (UNAVAILABLE), or, for a host made with
// `make_devices`, Create makes a real engine::Device through a fake ublk
// driver (engine/fake_ublk_driver.h, one FakeUblk each) whose state the
// test reads (Ublk). Adopt never makes one.
#ifndef UBLKGW_TESTS_UNIT_CONTROL_FAKE_UBLK_HOST_H_
#define UBLKGW_TESTS_UNIT_CONTROL_FAKE_UBLK_HOST_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "control/ublk_host.h"
#include "engine/fake_ublk_driver.h"

namespace ublkgw::control::testing {

class FakeUblkHost : public UblkHost {
 public:
  // The longest a held Create or Adopt waits for Release: a manager that
  // waited for it would be seen waiting this long, not for ever.
  static constexpr absl::Duration kHoldLimit = absl::Seconds(30);

  explicit FakeUblkHost(bool make_devices = false) : make_devices_(make_devices) {}

  // Create and Adopt asked for /dev/ublkb`id` wait until Release.
  void Hold(uint32_t id) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    held_.insert(id);
  }
  // Lets the held calls go on, and holds no more.
  void Release() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    held_.clear();
  }
  // Waits, until `deadline`, for a call held for `id`. False if none came.
  bool AwaitHeld(uint32_t id, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto waiting = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return waiting_.contains(id); };
    return mu_.AwaitWithDeadline(absl::Condition(&waiting), deadline);
  }
  // Waits, until `deadline`, for `n` Create or Adopt calls for `id` to
  // have returned.
  bool AwaitMade(uint32_t id, int n, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto made = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return Count(made_, id) >= n; };
    return mu_.AwaitWithDeadline(absl::Condition(&made), deadline);
  }
  // Create and Adopt calls for `id` that have begun.
  int Begun(uint32_t id) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return Count(begun_, id);
  }
  // GetDevInfo answers `dev` for dev.dev_id until RemoveDevice.
  void LeaveDevice(const ublk::ublksrv_ctrl_dev_info& dev) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    left_[dev.dev_id] = dev;
  }
  std::vector<uint32_t> Removed() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return removed_;
  }
  // The fake kernel state of the last device Create began to make for
  // `id` (make_devices only); null if none. Read it under its own mutex.
  std::shared_ptr<engine::testing::FakeUblk> Ublk(uint32_t id) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto it = ublks_.find(id);
    return it == ublks_.end() ? nullptr : it->second;
  }

  absl::Status Check() override { return absl::OkStatus(); }
  absl::StatusOr<uint64_t> GetFeatures() override { return 0; }
  absl::StatusOr<ublk::ublksrv_ctrl_dev_info> GetDevInfo(uint32_t id) override {
    absl::MutexLock lock(&mu_);
    auto it = left_.find(id);
    if (it == left_.end()) return absl::NotFoundError("no such device");
    return it->second;
  }
  absl::Status RemoveDevice(uint32_t id) override {
    absl::MutexLock lock(&mu_);
    left_.erase(id);
    removed_.push_back(id);
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<engine::Device>> Create(
      const engine::AttachOptions& options, engine::ConnectedExport connected) override {
    return Make(options, std::move(connected), /*create=*/true);
  }
  absl::StatusOr<std::unique_ptr<engine::Device>> Adopt(
      const engine::AttachOptions& options, engine::ConnectedExport connected) override {
    return Make(options, std::move(connected), /*create=*/false);
  }

 private:
  static int Count(const std::map<uint32_t, int>& counts, uint32_t id) {
    auto it = counts.find(id);
    return it == counts.end() ? 0 : it->second;
  }
  absl::StatusOr<std::unique_ptr<engine::Device>> Make(const engine::AttachOptions& options,
                                                       engine::ConnectedExport connected,
                                                       bool create) ABSL_LOCKS_EXCLUDED(mu_) {
    // An attach asks for no id: it is never held.
    const uint32_t id = options.device_id.value_or(UINT32_MAX);
    std::shared_ptr<engine::testing::FakeUblk> ublk;
    {
      absl::MutexLock lock(&mu_);
      ++begun_[id];
      if (held_.contains(id)) {
        waiting_.insert(id);
        auto released = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !held_.contains(id); };
        mu_.AwaitWithTimeout(absl::Condition(&released), kHoldLimit);
        waiting_.erase(id);
      }
      if (!make_devices_ || !create) {
        ++made_[id];
        return absl::UnavailableError("the fake ublk driver makes no devices");
      }
      ublk = std::make_shared<engine::testing::FakeUblk>();
      ublks_[id] = ublk;
    }
    // Unlocked: START_DEV waits for the new queues' fetches.
    auto device = engine::Device::Create(std::make_unique<engine::testing::FakeUblkDriver>(ublk),
                                         options, std::move(connected));
    absl::MutexLock lock(&mu_);
    ++made_[id];
    return device;
  }

  const bool make_devices_;
  absl::Mutex mu_;
  std::set<uint32_t> held_ ABSL_GUARDED_BY(mu_);
  std::set<uint32_t> waiting_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, int> begun_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, int> made_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, ublk::ublksrv_ctrl_dev_info> left_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> removed_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, std::shared_ptr<engine::testing::FakeUblk>> ublks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ublkgw::control::testing

#endif  // UBLKGW_TESTS_UNIT_CONTROL_FAKE_UBLK_HOST_H_
