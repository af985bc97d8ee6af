#include "control/ublk_host.h"

#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "control/remedy_words.h"
#include "glog/logging.h"
#include "ublk/control_device.h"
#include "ublk/io_queue.h"

namespace ublkgw::control {

namespace {

class KernelUblkHost final : public UblkHost {
 public:
  explicit KernelUblkHost(std::string control_path) : path_(std::move(control_path)) {}

  absl::Status Check() override {
    absl::MutexLock lock(&mu_);
    return Control().status();
  }
  absl::StatusOr<uint64_t> GetFeatures() override {
    absl::MutexLock lock(&mu_);
    auto ctrl = Control();
    if (!ctrl.ok()) return ctrl.status();
    return (*ctrl)->GetFeatures();
  }
  absl::StatusOr<ublk::ublksrv_ctrl_dev_info> GetDevInfo(uint32_t id) override {
    absl::MutexLock lock(&mu_);
    auto ctrl = Control();
    if (!ctrl.ok()) return ctrl.status();
    return (*ctrl)->GetDevInfo(id);
  }
  absl::Status RemoveDevice(uint32_t id) override {
    absl::MutexLock lock(&mu_);
    auto ctrl = Control();
    if (!ctrl.ok()) return ctrl.status();
    if (absl::Status s = (*ctrl)->StopDev(id); !s.ok()) return s;
    return (*ctrl)->DelDev(id);
  }
  absl::StatusOr<std::unique_ptr<engine::Device>> Create(
      const engine::AttachOptions& options, engine::ConnectedExport connected) override {
    auto device = engine::Device::Create(path_, options, std::move(connected));
    if (!device.ok()) return Explain(device.status());
    return device;
  }
  absl::StatusOr<std::unique_ptr<engine::Device>> Adopt(
      const engine::AttachOptions& options, engine::ConnectedExport connected) override {
    auto device = engine::Device::Adopt(path_, options, std::move(connected));
    if (!device.ok()) return Explain(device.status());
    return device;
  }

 private:
  absl::StatusOr<ublk::ControlDevice*> Control() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!control_.has_value()) {
      auto opened = ublk::ControlDevice::Open(path_);
      if (!opened.ok()) return opened.status();
      control_.emplace(*std::move(opened));
    }
    return &*control_;
  }

  const std::string path_;
  absl::Mutex mu_;
  std::optional<ublk::ControlDevice> control_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<UblkHost> OpenUblkHost(std::string control_path) {
  return std::make_unique<KernelUblkHost>(std::move(control_path));
}

LeftDevice AskLeftDevice(UblkHost& driver, const v1::AttachmentRecord& record) {
  if (record.device_cookie() == 0) return JudgeLeftDevice(record, absl::NotFoundError(""));
  absl::Status control = driver.Check();
  if (absl::IsFailedPrecondition(control)) {
    return {LeftVerdict::kNone, "no ublk driver: no device can be left"};
  }
  if (!control.ok()) return {LeftVerdict::kRetry, std::string(control.message())};
  return JudgeLeftDevice(record, driver.GetDevInfo(record.device_id()));
}

absl::Status RemoveLeftDevice(UblkHost& driver, const v1::AttachmentRecord& record) {
  const LeftDevice left = AskLeftDevice(driver, record);
  switch (left.verdict) {
    case LeftVerdict::kNone:
      return absl::OkStatus();
    case LeftVerdict::kWait:
    case LeftVerdict::kRetry:
      return absl::UnavailableError(absl::StrCat(left.why, "; try again in a moment"));
    case LeftVerdict::kAdopt:
      break;
  }
  // Its waiting requests fail with EIO; DEL_DEV waits for /dev/ublkcN.
  const uint32_t id = record.device_id();
  LOG(INFO) << "removing " << ublk::BlockDevicePath(id) << ", left by the previous ublkgwd";
  return driver.RemoveDevice(id);
}

}  // namespace ublkgw::control
