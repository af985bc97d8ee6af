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

// The fused data path (UBLK_F_FUSED_CMD, kernels carrying ublkgw's
// kernel/patches). `sqe` is the first half of a 128-byte SQE (a ring set up
// with IORING_SETUP_SQE128) holding an operation on the request's pages as
// if they were a fixed buffer: SEND, SEND_ZC or RECV with
// IORING_RECVSEND_FIXED_BUF, READ_FIXED or WRITE_FIXED, its `addr` the
// offset in the request's buffer. Makes it an IORING_OP_FUSED_CMD for
// (q_id, tag) on /dev/ublkcN: the master, UBLK_U_IO_FUSED_SUBMIT_IO, takes
// the operation's links and IOSQE_CQE_SKIP_SUCCESS and its user_data, and completes after the op with the op's result; the op moves
// to the second half as the slave, on the request's pages lent to it
// (READ_FIXED and WRITE_FIXED run as READ and WRITE there), carrying
// `slave_user_data`. A slave posts its own completion only when it fails
// (IOSQE_CQE_SKIP_SUCCESS; a SEND_ZC slave always does, and posts its
// notification too, which the kernel does not let a request complete
// before). Returns false, touching nothing, for any other operation.
bool FuseOnRequest(io_uring_sqe* sqe, int char_fd, uint16_t q_id, uint16_t tag,
                   uint64_t slave_user_data);

// UBLK_F_BATCH_IO: fills `sqe` with PREP_IO_CMDS or COMMIT_IO_CMDS
// (kIoPrepIoCmds, kIoCommitIoCmds) for queue `q_id`: `nr_elem` elements of
// `elem_bytes` each at `elems`, each a ublk_elem_header and, with
// kBatchFHasBufAddr in `flags`, the tag's buffer address. The kernel reads
// them when it issues the command: they must stay as they are until it
// completes.
void PrepBatchCmd(io_uring_sqe* sqe, int char_fd, uint32_t cmd_op, uint16_t q_id, uint16_t flags,
                  const void* elems, uint16_t nr_elem, uint8_t elem_bytes);

// UBLK_F_BATCH_IO: fills `sqe` with the multishot FETCH_IO_CMDS for queue
// `q_id`. Each completion brings the tags of new requests, 16 bits each,
// in a buffer it took from provided-buffer group `buf_group` (res: their
// bytes); without IORING_CQE_F_MORE it was the last, and the fetch must be
// issued again (-ENOBUFS: the group ran dry) unless the device is stopping
// (kIoResAbort).
void PrepFetchBatch(io_uring_sqe* sqe, int char_fd, uint16_t q_id, uint16_t buf_group);

// For a FETCH_REQ or COMMIT_AND_FETCH_REQ prepared with addr 0 on a
// kFAutoBufReg device: the kernel registers the tag's next request buffer
// in fixed-buffer slot `index` of the ring the command was issued on.
void SetAutoBufReg(io_uring_sqe* sqe, uint16_t index);

}  // namespace ublkgw::ublk

#endif  // UBLKGW_UBLK_IO_QUEUE_H_
