#include "engine/ublk_driver.h"

#include "base/unique_fd.h"
#include "ublk/io_queue.h"

namespace ublkgw::engine {
namespace {

class Kernel final : public UblkDriver {
 public:
  explicit Kernel(ublk::ControlDevice ctrl) : ctrl_(std::move(ctrl)) {}

  absl::StatusOr<uint64_t> GetFeatures() override { return ctrl_.GetFeatures(); }
  absl::StatusOr<ublk::ublksrv_ctrl_dev_info> AddDev(
      const ublk::ublksrv_ctrl_dev_info& info) override {
    return ctrl_.AddDev(info);
  }
  absl::Status SetParams(uint32_t dev_id, const ublk::ublk_params& params) override {
    return ctrl_.SetParams(dev_id, params);
  }
  absl::StatusOr<ublk::ublk_params> GetParams(uint32_t dev_id) override {
    return ctrl_.GetParams(dev_id);
  }
  absl::StatusOr<ublk::ublksrv_ctrl_dev_info> GetDevInfo(uint32_t dev_id) override {
    return ctrl_.GetDevInfo(dev_id);
  }
  absl::Status StartDev(uint32_t dev_id, int32_t server_pid) override {
    return ctrl_.StartDev(dev_id, server_pid);
  }
  absl::Status StopDev(uint32_t dev_id) override { return ctrl_.StopDev(dev_id); }
  absl::Status DelDev(uint32_t dev_id) override { return ctrl_.DelDev(dev_id); }
  absl::Status UpdateSize(uint32_t dev_id, uint64_t sectors) override {
    return ctrl_.UpdateSize(dev_id, sectors);
  }
  absl::Status StartUserRecovery(uint32_t dev_id) override {
    return ctrl_.StartUserRecovery(dev_id);
  }
  absl::Status EndUserRecovery(uint32_t dev_id, int32_t server_pid) override {
    return ctrl_.EndUserRecovery(dev_id, server_pid);
  }

  absl::Status OpenQueues(uint32_t dev_id) override {
    auto fd = ublk::OpenCharDevice(dev_id, absl::Seconds(10));
    if (!fd.ok()) return fd.status();
    char_fd_ = *std::move(fd);
    return absl::OkStatus();
  }
  std::unique_ptr<UblkQueue> MakeQueue(uint16_t q_id, uint16_t depth) override {
    return std::make_unique<KernelUblkQueue>(char_fd_.get(), q_id, depth);
  }
  void CloseQueues() override { char_fd_.Reset(); }

 private:
  ublk::ControlDevice ctrl_;
  UniqueFd char_fd_;
};

}  // namespace

std::unique_ptr<UblkDriver> KernelUblkDriver(ublk::ControlDevice ctrl) {
  return std::make_unique<Kernel>(std::move(ctrl));
}

}  // namespace ublkgw::engine
