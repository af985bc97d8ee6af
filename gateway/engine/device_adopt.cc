// Device::Adopt: taking over a device a previous daemon left in the kernel.
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "engine/device.h"
#include "glog/logging.h"

namespace ublkgw::engine {

absl::StatusOr<std::unique_ptr<Device>> Device::Adopt(const std::string& control_path,
                                                      const AttachOptions& options,
                                                      ConnectedExport connected) {
  auto driver = OpenDriver(control_path);
  if (!driver.ok()) return driver.status();
  return Adopt(*std::move(driver), options, std::move(connected));
}

absl::StatusOr<std::unique_ptr<Device>> Device::Adopt(std::unique_ptr<UblkDriver> driver,
                                                      const AttachOptions& options,
                                                      ConnectedExport connected) {
  if (!options.device_id.has_value()) return absl::InvalidArgumentError("no device to adopt");
  const uint32_t id = *options.device_id;
  std::unique_ptr<Device> device(new Device(std::move(driver)));
  device->id_ = id;
  UblkDriver& ctrl = *device->driver_;
  auto dev = ctrl.GetDevInfo(id);
  if (!dev.ok()) return dev.status();
  if (options.device_cookie == 0 || dev->ublksrv_flags != options.device_cookie) {
    return absl::FailedPreconditionError(
        absl::StrCat(ublk::BlockDevicePath(id), " is not the device made for this volume"));
  }
  auto params = ctrl.GetParams(id);
  if (!params.ok()) return params.status();
  DeviceNeeds needs = NeedsOfDevice(*dev, *params);
  const uint16_t queues = dev->nr_hw_queues;
  if (connected.sockets.size() != queues) {
    return absl::FailedPreconditionError(absl::StrCat(
        ublk::BlockDevicePath(id), " has ", queues, " queues but the server gave ",
        connected.sockets.size(), " connection(s) (does it still set CAN_MULTI_CONN?)"));
  }
  needs.needed.mode = connected.info.mode;
  if (absl::Status s = CheckReconnectedExport(needs.needed, connected.info, needs.shape); !s.ok()) {
    return s;
  }
  auto plan = PlanForDevice(KernelFeatures(ctrl), options.tuning, dev->flags,
                            connected.sockets[0].get());
  if (!plan.ok()) return plan.status();
  // Fails while the old daemon still holds /dev/ublkcN (it is exiting).
  if (absl::Status s = ctrl.StartUserRecovery(id); !s.ok()) return s;

  device->recoverable_ = true;
  device->note_ = connected.note;
  AttachOptions shaped = options;
  shaped.depth = dev->queue_depth;
  shaped.read_only = needs.shape.read_only;
  connected.max_io = dev->max_io_buf_bytes;
  const nbd::ExportInfo info = connected.info;
  if (absl::Status s = device->StartWorkers(shaped, connected, *plan, info, needs.shape); !s.ok()) {
    device->StopWorkers();  // the device waits, quiesced, for the next try
    return s;
  }
  // Held and reissued requests go to the new queues from here on.
  if (absl::Status s = ctrl.EndUserRecovery(id, getpid()); !s.ok()) {
    device->StopWorkers();
    return s;
  }
  device->size_ = needs.shape.size;
  device->attached_ = true;
  LOG(INFO) << "took over " << device->block_path() << " from the previous ublkgwd: "
            << connected.uri << " (" << needs.shape.size << " bytes, " << queues
            << " queue(s) of depth " << dev->queue_depth << "); data path: " << plan->detail;
  return device;
}

}  // namespace ublkgw::engine
