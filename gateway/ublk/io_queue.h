// The kernel side of one ublk queue: the I/O descriptor array mapped from
// /dev/ublkcN, and the URING_CMDs that fetch requests and commit results.
#ifndef UBLKGW_UBLK_IO_QUEUE_H_
#define UBLKGW_UBLK_IO_QUEUE_H_

#include <liburing.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "ublk/uapi.h"

namespace ublkgw::ublk {

std::string CharDevicePath(uint32_t dev_id);   // /dev/ublkcN
std::string BlockDevicePath(uint32_t dev_id);  // /dev/ublkbN

// Opens /dev/ublkcN, waiting up to `timeout` for devtmpfs (or udev) to
// create it after ADD_DEV.
absl::StatusOr<UniqueFd> OpenCharDevice(uint32_t dev_id, absl::Duration timeout);

// One queue's read-only array of I/O descriptors, indexed by tag: the
// kernel writes a tag's descriptor before completing its FETCH_REQ.
// Move-only; unmapped on destruction. Owned by the queue's thread.
class IoDescMap {
 public:
  static absl::StatusOr<IoDescMap> Map(int char_fd, uint16_t q_id, uint16_t queue_depth);
  IoDescMap(IoDescMap&& other) noexcept;
  IoDescMap& operator=(IoDescMap&&) = delete;
  ~IoDescMap();

  // A copy of tag's descriptor (read once: the kernel may reuse the slot
  // once the tag is committed).
  ublksrv_io_desc Get(uint16_t tag) const { return descs_[tag]; }
  uint16_t depth() const { return depth_; }

 private:
  IoDescMap(const ublksrv_io_desc* descs, size_t bytes, uint16_t depth)
      : descs_(descs), bytes_(bytes), depth_(depth) {}
  const ublksrv_io_desc* descs_;
  size_t bytes_;
  uint16_t depth_;
};

// Fills `sqe` with an I/O command (kIoFetchReq, kIoCommitAndFetchReq, ...)
// for (q_id, tag) on /dev/ublkcN. `result` is the committed result (bytes or
// -errno); `addr` the tag's buffer (copy path). With kFAutoBufReg, `addr`
// must be 0: the packed ublk_auto_buf_reg goes in the SQE's own `addr`
// field instead (AutoBufRegToSqeAddr), which the kernel reads there.
void PrepIoCmd(io_uring_sqe* sqe, int char_fd, uint32_t cmd_op, uint16_t q_id, uint16_t tag,
               int32_t result, uint64_t addr);

// For a FETCH_REQ or COMMIT_AND_FETCH_REQ prepared with addr 0 on a
// kFAutoBufReg device: the kernel registers the tag's next request buffer
// in fixed-buffer slot `index` of the ring the command was issued on.
void SetAutoBufReg(io_uring_sqe* sqe, uint16_t index);

}  // namespace ublkgw::ublk

#endif  // UBLKGW_UBLK_IO_QUEUE_H_
