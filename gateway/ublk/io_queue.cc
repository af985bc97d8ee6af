#include "ublk/io_queue.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace ublkgw::ublk {

std::string CharDevicePath(uint32_t dev_id) { return absl::StrCat("/dev/ublkc", dev_id); }
std::string BlockDevicePath(uint32_t dev_id) { return absl::StrCat("/dev/ublkb", dev_id); }

absl::StatusOr<UniqueFd> OpenCharDevice(uint32_t dev_id, absl::Duration timeout) {
  const std::string path = CharDevicePath(dev_id);
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    auto fd = UniqueFd::Open(path, O_RDWR);
    if (fd.ok() || !absl::IsNotFound(fd.status()) || absl::Now() >= deadline) return fd;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

absl::StatusOr<IoDescMap> IoDescMap::Map(int char_fd, uint16_t q_id, uint16_t queue_depth) {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const size_t bytes = IoDescArraySize(queue_depth, page);
  void* addr = mmap(nullptr, bytes, PROT_READ, MAP_SHARED | MAP_POPULATE, char_fd,
                    static_cast<off_t>(IoDescMmapOffset(q_id, page)));
  if (addr == MAP_FAILED) {
    return ErrnoToStatus(errno, absl::StrCat("mmap of the I/O descriptors of queue ", q_id));
  }
  return IoDescMap(static_cast<const ublksrv_io_desc*>(addr), bytes, queue_depth);
}

IoDescMap::IoDescMap(IoDescMap&& other) noexcept
    : descs_(other.descs_), bytes_(other.bytes_), depth_(other.depth_) {
  other.descs_ = nullptr;
}

IoDescMap::~IoDescMap() {
  if (descs_ != nullptr) munmap(const_cast<ublksrv_io_desc*>(descs_), bytes_);
}

namespace {

// A URING_CMD `cmd_op` on /dev/ublkcN, its 16-byte command `cmd` (which
// fits the command area of a 64-byte SQE) and nothing else of a stale SQE.
template <typename Cmd>
void PrepUringCmd(io_uring_sqe* sqe, int char_fd, uint32_t cmd_op, const Cmd& cmd) {
  static_assert(sizeof(Cmd) <= 16);
  std::memset(sqe, 0, sizeof(*sqe));
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = char_fd;
  sqe->cmd_op = cmd_op;
  std::memcpy(sqe->cmd, &cmd, sizeof(cmd));
}

}  // namespace

void PrepIoCmd(io_uring_sqe* sqe, int char_fd, uint32_t cmd_op, uint16_t q_id, uint16_t tag,
               int32_t result, uint64_t addr) {
  ublksrv_io_cmd cmd{};
  cmd.q_id = q_id;
  cmd.tag = tag;
  cmd.result = result;
  cmd.addr = addr;
  PrepUringCmd(sqe, char_fd, cmd_op, cmd);
}

void PrepBatchCmd(io_uring_sqe* sqe, int char_fd, uint32_t cmd_op, uint16_t q_id, uint16_t flags,
                  const void* elems, uint16_t nr_elem, uint8_t elem_bytes) {
  ublk_batch_io cmd{};
  cmd.q_id = q_id;
  cmd.flags = flags;
  cmd.nr_elem = nr_elem;
  cmd.elem_bytes = elem_bytes;
  PrepUringCmd(sqe, char_fd, cmd_op, cmd);
  sqe->addr = reinterpret_cast<uintptr_t>(elems);
  sqe->len = uint32_t{nr_elem} * elem_bytes;
}

void PrepFetchBatch(io_uring_sqe* sqe, int char_fd, uint16_t q_id, uint16_t buf_group) {
  ublk_batch_io cmd{};
  cmd.q_id = q_id;
  cmd.elem_bytes = sizeof(uint16_t);
  PrepUringCmd(sqe, char_fd, kIoFetchIoCmds, cmd);
  sqe->uring_cmd_flags = kUringCmdMultishot;
  sqe->flags = IOSQE_BUFFER_SELECT;
  sqe->buf_group = buf_group;
}

bool FuseOnRequest(io_uring_sqe* sqe, int char_fd, uint16_t q_id, uint16_t tag,
                   uint64_t slave_user_data) {
  io_uring_sqe op = *sqe;
  switch (op.opcode) {
    case IORING_OP_SEND:
    case IORING_OP_RECV:
    case IORING_OP_SEND_ZC:
      if ((op.ioprio & IORING_RECVSEND_FIXED_BUF) == 0) return false;
      break;
    case IORING_OP_READ_FIXED:
      op.opcode = IORING_OP_READ;
      break;
    case IORING_OP_WRITE_FIXED:
      op.opcode = IORING_OP_WRITE;
      break;
    default:
      return false;
  }
  op.buf_index = 0;  // the buffer is the lent one, not a table slot
  // Links (and whether a success posts) are the master's; the slave keeps
  // only a fixed file.
  const uint8_t master_flags =
      op.flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK | IOSQE_CQE_SKIP_SUCCESS);
  op.flags = static_cast<uint8_t>((op.flags & IOSQE_FIXED_FILE) |
                                  (op.opcode == IORING_OP_SEND_ZC ? 0 : IOSQE_CQE_SKIP_SUCCESS));
  const uint64_t user_data = op.user_data;
  op.user_data = slave_user_data;
  PrepIoCmd(sqe, char_fd, kIoFusedSubmitIo, q_id, tag, 0, 0);
  sqe->opcode = kIoringOpFusedCmd;
  sqe->flags = master_flags;
  sqe->user_data = user_data;
  sqe[1] = op;
  return true;
}

void SetAutoBufReg(io_uring_sqe* sqe, uint16_t index) {
  ublk_auto_buf_reg reg{};
  reg.index = index;
  sqe->addr = AutoBufRegToSqeAddr(reg);
}

}  // namespace ublkgw::ublk
