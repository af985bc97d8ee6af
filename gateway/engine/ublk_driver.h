// The ublk driver as one device sees it: the control commands on the
// device, and its queues (/dev/ublkcN). engine::Device reaches the kernel
// only through this seam, so a test can run the real Device, with its real
// queue workers, against a fake driver (tests/unit/engine/
// fake_ublk_driver.h) on a host without ublk.
//
// Threads: the owner serialises calls, except that StopDev, DelDev and
// EndUserRecovery may block while the queue threads run.
#ifndef UBLKGW_ENGINE_UBLK_DRIVER_H_
#define UBLKGW_ENGINE_UBLK_DRIVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/ublk_queue.h"
#include "ublk/control_device.h"
#include "ublk/uapi.h"

namespace ublkgw::engine {

class UblkDriver {
 public:
  virtual ~UblkDriver() = default;

  // The commands of ublk::ControlDevice, with its contracts.
  virtual absl::StatusOr<uint64_t> GetFeatures() = 0;
  virtual absl::StatusOr<ublk::ublksrv_ctrl_dev_info> AddDev(
      const ublk::ublksrv_ctrl_dev_info& info) = 0;
  virtual absl::Status SetParams(uint32_t dev_id, const ublk::ublk_params& params) = 0;
  virtual absl::StatusOr<ublk::ublk_params> GetParams(uint32_t dev_id) = 0;
  virtual absl::StatusOr<ublk::ublksrv_ctrl_dev_info> GetDevInfo(uint32_t dev_id) = 0;
  virtual absl::Status StartDev(uint32_t dev_id, int32_t server_pid) = 0;
  virtual absl::Status StopDev(uint32_t dev_id) = 0;
  virtual absl::Status DelDev(uint32_t dev_id) = 0;
  virtual absl::Status UpdateSize(uint32_t dev_id, uint64_t sectors) = 0;
  virtual absl::Status StartUserRecovery(uint32_t dev_id) = 0;
  virtual absl::Status EndUserRecovery(uint32_t dev_id, int32_t server_pid) = 0;

  // Opens the queues of device `dev_id` (its /dev/ublkcN), after ADD_DEV
  // or START_USER_RECOVERY.
  virtual absl::Status OpenQueues(uint32_t dev_id) = 0;
  // Queue `q_id` of the open device, for its worker; valid until
  // CloseQueues().
  virtual std::unique_ptr<UblkQueue> MakeQueue(uint16_t q_id, uint16_t depth) = 0;
  // Closes the queues (DEL_DEV waits for it). The workers are gone.
  virtual void CloseQueues() = 0;
};

// The real driver: `ctrl` and the character devices it makes.
std::unique_ptr<UblkDriver> KernelUblkDriver(ublk::ControlDevice ctrl);

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_UBLK_DRIVER_H_
