// A fake of the kernel's side of one ublk queue, so tests run the real
// QueueWorker, on its real io_uring, on a host without ublk.
//
// The worker's FETCH_REQ and COMMIT_AND_FETCH_REQ become NOPs that post
// nothing; the fake notes which tags wait for a request. A test issues a
// request on a waiting tag: the fake writes its descriptor (and a write's
// data into the tag's buffer, the copy path's), then posts the completion
// the kernel would, into the worker's ring, with IORING_OP_MSG_RING from a
// ring of its own. A commit is recorded with its result (and a read's data,
// from the tag's buffer) for the test to wait on.
// Zero copy: the fake puts a buffer of its own per tag into the worker's
// fixed-buffer table at slot `tag` (as UBLK_F_AUTO_BUF_REG puts the
// request's pages there) when the worker first fetches on the tag; writes'
// data go there and reads' data are taken from there.
// Fused (FakeUblkKernel::set_fused): the host kernel has no
// IORING_OP_FUSED_CMD, so the fake checks each operation the worker fuses
// as the patched kernel would (an op that may be a slave, on the tag's
// buffer, inside the request, in the request's direction), counts it, and
// leaves it to run as the fixed-buffer op it is. The tag's pages enter
// the table only with its first fused op and leave at its commit: an op
// the worker forgot to fuse finds an empty slot and fails.
//
// Batched (FakeUblkKernel::set_batch, UBLK_F_BATCH_IO): PREP_IO_CMDS and
// COMMIT_IO_CMDS are checked element by element as the kernel does (a
// commit stops at the first tag the worker does not hold, and its result
// says how many bytes of elements it took), and complete with a posted
// result; FETCH_IO_CMDS is armed until StopDevice or EndFetch, and each
// issued request's tag comes in a completion of it, with a buffer id
// TakeFetched resolves (Hold/Deliver put several tags in one). Zero copy:
// a tag's pages enter slot `tag` when its request is handed out and leave
// at its commit, as with UBLK_F_AUTO_BUF_REG. A batched command's SQE is a
// MSG_RING to a ring of the fake's own, so the fake knows which ones the
// worker submitted (UnsubmittedBatchCommands).
//
// Threads: the worker calls the UblkQueue side on its thread; tests call
// the rest from theirs. Everything is under one mutex.
#ifndef UBLKGW_TESTS_UNIT_ENGINE_FAKE_UBLK_QUEUE_H_
#define UBLKGW_TESTS_UNIT_ENGINE_FAKE_UBLK_QUEUE_H_

#include <liburing.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/uring.h"
#include "engine/ublk_queue.h"
#include "ublk/uapi.h"

namespace ublkgw::engine::testing {

// One request the fake kernel completed: its tag, the result the worker
// committed, and for a read the bytes it left in the tag's buffer.
struct Commit {
  uint16_t tag = 0;
  int32_t result = 0;
  std::string data;
};

class FakeUblkKernel {
 public:
  // `zero_copy_bytes` > 0: the zero-copy fake, with buffers that large.
  explicit FakeUblkKernel(uint16_t depth, uint32_t zero_copy_bytes = 0)
      : depth_(depth), tags_(depth), zero_copy_bytes_(zero_copy_bytes) {
    auto ring = Ring::Create(8, 0);
    if (ring.ok()) ring_.emplace(*std::move(ring));
    auto inbox = Ring::Create(64, 0);
    if (inbox.ok()) inbox_.emplace(*std::move(inbox));
    if (zero_copy_bytes_ > 0) {
      for (TagSlot& t : tags_) t.pages.resize(zero_copy_bytes_);
    }
  }

  uint16_t depth() const { return depth_; }

  // UBLK_F_BATCH_IO: see the file comment. Before the worker starts.
  void set_batch(bool batch) {
    absl::MutexLock lock(&mu_);
    batch_ = batch;
  }
  // Batched: requests issued from now on wait, until Deliver() posts all
  // their tags in one fetch completion.
  void Hold() {
    absl::MutexLock lock(&mu_);
    hold_ = true;
  }
  bool Deliver() {
    absl::MutexLock lock(&mu_);
    hold_ = false;
    if (held_.empty()) return true;
    std::vector<uint16_t> tags;
    tags.swap(held_);
    return PostFetched(std::move(tags));
  }
  // Batched: the fetch ends without the device stopping, as when the
  // worker's buffers run out (-ENOBUFS): the worker must fetch again.
  bool EndFetch(int32_t res) {
    absl::MutexLock lock(&mu_);
    if (!fetch_armed_) return false;
    fetch_armed_ = false;
    return Post(fetch_user_data_, res, 0);
  }
  // How many times the worker armed FETCH_IO_CMDS; how many COMMIT_IO_CMDS
  // it sent, and how many requests they carried.
  int fetches_armed() {
    absl::MutexLock lock(&mu_);
    return fetches_armed_;
  }
  std::pair<int, int> batch_commits() {
    absl::MutexLock lock(&mu_);
    return {batch_commits_, batch_committed_};
  }
  // Batched: PREP_IO_CMDS fails (as when the device is gone), so the
  // fetch linked behind it is cancelled. Before the worker starts.
  void FailPrep() {
    absl::MutexLock lock(&mu_);
    fail_prep_ = true;
  }
  // Batched: the next COMMIT_IO_CMDS element for `tag` is refused, as the
  // kernel refuses a tag it does not think is the server's (-EBUSY): the
  // command stops there.
  void RefuseCommitOf(uint16_t tag) {
    absl::MutexLock lock(&mu_);
    refuse_commit_of_ = tag;
  }
  // Batched commands the worker prepared (and this fake carried out, as
  // the kernel would at issue) but never submitted: 0 once every one
  // reached the ring.
  int UnsubmittedBatchCommands() {
    absl::MutexLock lock(&mu_);
    DrainInbox();
    return static_cast<int>(unsubmitted_.size());
  }
  // What the kernel would have refused of the worker's batched commands.
  std::vector<std::string> batch_refusals() {
    absl::MutexLock lock(&mu_);
    return batch_refusals_;
  }

  // The fused data path: see the file comment. Before the worker starts.
  void set_fused(bool fused) {
    absl::MutexLock lock(&mu_);
    fused_ = fused;
  }
  // How many operations the worker fused, and what the kernel would have
  // refused of them (empty: nothing).
  int fused_ops() {
    absl::MutexLock lock(&mu_);
    return fused_ops_;
  }
  std::vector<std::string> fuse_refusals() {
    absl::MutexLock lock(&mu_);
    return fuse_refusals_;
  }

  // The queue to hand to the worker; it refers to this kernel, which must
  // outlive it.
  std::unique_ptr<UblkQueue> MakeQueue();

  // Issues a request on `tag` once the worker waits for one there (within
  // `timeout`): op is ublk::kIoOp*, offset and length in bytes; a write's
  // bytes are `data`. False if the tag never became free.
  bool Issue(uint16_t tag, uint8_t op, uint64_t offset, uint32_t length,
             const std::string& data = "", uint32_t flags = 0,
             absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    TagSlot& t = tags_[tag];
    auto fetching = [&]() { return t.fetching && (!batch_ || fetch_armed_); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&fetching), timeout)) return false;
    t.fetching = false;
    t.desc = {};
    t.desc.op_flags = op | flags;
    t.desc.nr_sectors = length >> 9;
    t.desc.start_sector = offset >> 9;
    t.desc.addr = t.addr;
    t.op = op;
    uint8_t* buffer = Buffer(t);
    if (op == ublk::kIoOpWrite && buffer != nullptr) {
      std::memcpy(buffer, data.data(), std::min<size_t>(data.size(), length));
    } else if (op == ublk::kIoOpRead && buffer != nullptr) {
      std::memset(buffer, '?', length);  // a read must overwrite every byte
    }
    if (batch_) {
      if (hold_) {
        held_.push_back(tag);
        return true;
      }
      return PostFetched({tag});
    }
    return Post(t.user_data, 0);
  }

  // The next commit of `tag` (any tag: nullopt), waiting up to `timeout`.
  std::optional<Commit> WaitCommit(std::optional<uint16_t> tag,
                                   absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto has = [&]() {
      for (const Commit& c : commits_) {
        if (!tag || c.tag == *tag) return true;
      }
      return false;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&has), timeout)) return std::nullopt;
    for (auto it = commits_.begin(); it != commits_.end(); ++it) {
      if (!tag || it->tag == *tag) {
        Commit c = std::move(*it);
        commits_.erase(it);
        return c;
      }
    }
    return std::nullopt;
  }

  // The device stops: every waiting fetch, and every later one, completes
  // with -ENODEV (UBLK_IO_RES_ABORT), as STOP_DEV does.
  void StopDevice() {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (batch_) {
      // The fetch ends; the tags it would have handed out are the worker's
      // to count as done.
      if (fetch_armed_) Post(fetch_user_data_, -ENODEV, 0);
      fetch_armed_ = false;
      for (TagSlot& t : tags_) t.fetching = false;
      return;
    }
    for (TagSlot& t : tags_) {
      if (t.fetching) {
        t.fetching = false;
        Post(t.user_data, -ENODEV);
      }
    }
  }

  // How many tags wait for a request (all of them once the worker runs).
  int Fetching() {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const TagSlot& t : tags_) n += t.fetching ? 1 : 0;
    return n;
  }
  bool WaitFetching(int n, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() {
      int have = 0;
      for (const TagSlot& t : tags_) have += t.fetching ? 1 : 0;
      return have >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }

 private:
  friend class FakeUblkQueue;
  struct TagSlot {
    bool fetching = false;
    uint64_t user_data = 0;
    uint64_t addr = 0;
    uint8_t op = 0;
    ublk::ublksrv_io_desc desc{};
    std::vector<uint8_t> pages;  // zero copy: the "request's pages"
    bool registered = false;     // zero copy: in the worker's table
    bool prepared = false;       // batched: PREP_IO_CMDS named it
  };

  // Where the kernel would copy a request's data: the worker's buffer
  // (copy), or the tag's pages (zero copy).
  static uint8_t* Buffer(TagSlot& t) {
    if (!t.pages.empty()) return t.pages.data();
    return reinterpret_cast<uint8_t*>(t.addr);
  }

  // Posts a CQE (res, user_data, cqe_flags) into the worker's ring.
  bool Post(uint64_t user_data, int32_t res, uint32_t cqe_flags = 0)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!ring_ || worker_ring_fd_ < 0) return false;
    io_uring_sqe* sqe = io_uring_get_sqe(ring_->get());
    if (sqe == nullptr) return false;
    io_uring_prep_msg_ring(sqe, worker_ring_fd_, static_cast<unsigned>(res), user_data, 0);
    if (cqe_flags != 0) {
      constexpr uint32_t kMsgRingFlagsPass = 1u << 1;  // IORING_MSG_RING_FLAGS_PASS, 6.3
      sqe->msg_ring_flags = kMsgRingFlagsPass;
      sqe->file_index = cqe_flags;
    }
    auto cqe = ring_->SubmitAndWait(absl::Seconds(5));
    if (!cqe.ok()) return false;
    const bool ok = (*cqe)->res >= 0;
    io_uring_cqe_seen(ring_->get(), *cqe);
    return ok;
  }

  // The worker's side (FakeUblkQueue).
  uint64_t PagesOf(uint16_t tag) {
    absl::MutexLock lock(&mu_);
    return reinterpret_cast<uintptr_t>(tags_[tag].pages.data());
  }
  void Open(io_uring* ring, bool batch) {
    absl::MutexLock lock(&mu_);
    worker_ring_ = ring;
    worker_ring_fd_ = ring->ring_fd;
    if (batch != batch_) {
      batch_refusals_.push_back(batch ? "batched commands on a device without UBLK_F_BATCH_IO"
                                      : "per-tag commands on a device with UBLK_F_BATCH_IO");
    }
  }

  // One fetch completion bringing `tags`, its buffer id naming them for
  // TakeFetched.
  bool PostFetched(std::vector<uint16_t> tags) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const uint16_t bid = next_bid_++;
    const auto bytes = static_cast<int32_t>(tags.size() * sizeof(uint16_t));
    fetched_[bid] = std::move(tags);
    return Post(fetch_user_data_, bytes,
                IORING_CQE_F_BUFFER | IORING_CQE_F_MORE | uint32_t{bid} << IORING_CQE_BUFFER_SHIFT);
  }

  bool TakeFetched(const io_uring_cqe& cqe, std::vector<uint16_t>* tags) {
    absl::MutexLock lock(&mu_);
    const auto it = fetched_.find(static_cast<uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT));
    if ((cqe.flags & IORING_CQE_F_BUFFER) == 0 || it == fetched_.end() ||
        static_cast<size_t>(cqe.res) != it->second.size() * sizeof(uint16_t)) {
      return false;
    }
    for (uint16_t tag : it->second) {
      TagSlot& t = tags_[tag];
      if (!t.pages.empty() && !t.registered) t.registered = Register(t, tag);
    }
    tags->insert(tags->end(), it->second.begin(), it->second.end());
    fetched_.erase(it);
    return true;
  }

  // Takes the tokens of the batched commands the worker submitted.
  void DrainInbox() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!inbox_) return;
    io_uring_cqe* cqe;
    while (io_uring_peek_cqe(inbox_->get(), &cqe) == 0) {
      unsubmitted_.erase(cqe->user_data);
      io_uring_cqe_seen(inbox_->get(), cqe);
    }
  }

  void PrepFetchBatch(io_uring_sqe* sqe, uint64_t user_data) {
    io_uring_prep_nop(sqe);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, 0);
    absl::MutexLock lock(&mu_);
    if (!batch_) batch_refusals_.push_back("FETCH_IO_CMDS without UBLK_F_BATCH_IO");
    if (fetch_armed_) batch_refusals_.push_back("a second FETCH_IO_CMDS while one is armed");
    ++fetches_armed_;
    fetch_user_data_ = user_data;
    if (prep_failed_) {  // linked behind the failed PREP_IO_CMDS
      prep_failed_ = false;
      Post(user_data, -ECANCELED, 0);
      return;
    }
    if (stopping_) {
      Post(user_data, -ENODEV, 0);
      return;
    }
    fetch_armed_ = true;
  }

  // PREP_IO_CMDS or COMMIT_IO_CMDS, checked as the kernel does.
  void PrepBatch(io_uring_sqe* sqe, uint32_t cmd_op, uint16_t flags, const uint8_t* elems,
                 uint16_t nr_elem, uint8_t elem_bytes, uint64_t user_data) {
    absl::MutexLock lock(&mu_);
    DrainInbox();
    const uint64_t token = ++last_token_;
    unsubmitted_.insert(token);
    io_uring_prep_msg_ring(sqe, inbox_ ? inbox_->get()->ring_fd : -1, 0, token, 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, 0);
    const bool copy = zero_copy_bytes_ == 0;
    const uint8_t want_bytes = copy ? 16 : 8;
    const uint16_t want_flags = copy ? ublk::kBatchFHasBufAddr : 0;
    if (fail_prep_ && cmd_op == ublk::kIoPrepIoCmds) {
      fail_prep_ = false;
      prep_failed_ = true;
      Post(user_data, -ENODEV);
      return;
    }
    if (!batch_ || elem_bytes != want_bytes || flags != want_flags || nr_elem > depth_ ||
        (cmd_op != ublk::kIoPrepIoCmds && cmd_op != ublk::kIoCommitIoCmds)) {
      batch_refusals_.push_back("a batched command the kernel refuses (flags, sizes or op)");
      if (cmd_op == ublk::kIoPrepIoCmds) prep_failed_ = true;
      Post(user_data, -EINVAL);
      return;
    }
    const bool prep = cmd_op == ublk::kIoPrepIoCmds;
    if (!prep) ++batch_commits_;
    int32_t done = 0;
    for (uint16_t i = 0; i < nr_elem; ++i, done += elem_bytes) {
      ublk::ublk_elem_header elem{};
      std::memcpy(&elem, elems + size_t{i} * elem_bytes, sizeof(elem));
      uint64_t addr = 0;
      if (copy) std::memcpy(&addr, elems + size_t{i} * elem_bytes + sizeof(elem), sizeof(addr));
      if (elem.tag >= depth_ || (!copy && elem.buf_index != elem.tag) || (copy && addr == 0)) {
        batch_refusals_.push_back("an element the kernel refuses (tag, buffer)");
        break;
      }
      TagSlot& t = tags_[elem.tag];
      if (!prep && refuse_commit_of_ == elem.tag) {
        refuse_commit_of_ = -1;
        break;
      }
      if (prep ? t.prepared : (t.fetching || !t.prepared)) {
        batch_refusals_.push_back(prep ? "PREP_IO_CMDS of a tag prepared already"
                                       : "COMMIT_IO_CMDS of a tag the worker does not hold");
        break;
      }
      t.prepared = true;
      // The element names the buffer; at a commit the kernel copies a
      // read's data out of it.
      t.addr = copy ? addr : 0;
      if (!prep) {
        ++batch_committed_;
        Commit c{elem.tag, elem.result, ""};
        if (t.op == ublk::kIoOpRead && elem.result > 0 && Buffer(t) != nullptr) {
          c.data.assign(reinterpret_cast<const char*>(Buffer(t)),
                        static_cast<size_t>(elem.result));
        }
        commits_.push_back(std::move(c));
        if (t.registered) {  // the request's pages leave slot `tag`
          iovec none{nullptr, 0};
          t.registered =
              io_uring_register_buffers_update_tag(worker_ring_, elem.tag, &none, nullptr, 1) != 1;
        }
      }
      t.fetching = !stopping_;
    }
    // PREP_IO_CMDS: 0, or an error (the kernel undoes what it prepared;
    // this fake only ever sees the worker's one). COMMIT_IO_CMDS: the bytes
    // of elements committed, or an error when it committed none.
    const bool all = done == int32_t{nr_elem} * elem_bytes;
    if (prep) {
      prep_failed_ = !all;
      Post(user_data, all ? 0 : -EINVAL);
    } else {
      Post(user_data, done == 0 && nr_elem > 0 ? -EBUSY : done);
    }
  }
  ublk::ublksrv_io_desc Desc(uint16_t tag) {
    absl::MutexLock lock(&mu_);
    return tags_[tag].desc;
  }
  void Prep(io_uring_sqe* sqe, uint32_t cmd_op, uint16_t tag, int32_t result, uint64_t addr,
            uint64_t user_data) {
    io_uring_prep_nop(sqe);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, 0);
    if (cmd_op != ublk::kIoFetchReq && cmd_op != ublk::kIoCommitAndFetchReq) return;
    absl::MutexLock lock(&mu_);
    if (batch_) {
      batch_refusals_.push_back("a per-tag FETCH or COMMIT on a device with UBLK_F_BATCH_IO");
      return;
    }
    TagSlot& t = tags_[tag];
    if (cmd_op == ublk::kIoCommitAndFetchReq) {
      Commit c{tag, result, ""};
      if (t.op == ublk::kIoOpRead && result > 0 && Buffer(t) != nullptr) {
        c.data.assign(reinterpret_cast<const char*>(Buffer(t)), static_cast<size_t>(result));
      }
      commits_.push_back(std::move(c));
    }
    t.addr = t.pages.empty() ? addr : 0;
    if (fused_ && t.registered) {  // the request's pages are lent no more
      iovec none{nullptr, 0};
      t.registered = io_uring_register_buffers_update_tag(worker_ring_, tag, &none, nullptr, 1) != 1;
    } else if (!fused_ && !t.pages.empty() && !t.registered) {
      t.registered = Register(t, tag);
    }
    t.user_data = user_data;
    if (stopping_) {
      Post(user_data, -ENODEV);
    } else {
      t.fetching = true;
    }
  }

  // Called on the worker's thread, the ring's single issuer.
  bool Register(TagSlot& t, uint16_t tag) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    iovec iov{t.pages.data(), t.pages.size()};
    return io_uring_register_buffers_update_tag(worker_ring_, tag, &iov, nullptr, 1) == 1;
  }

  bool Fuse(io_uring_sqe* sqe, uint16_t tag) {
    absl::MutexLock lock(&mu_);
    TagSlot& t = tags_[tag];
    if (const char* refusal = FuseRefusal(*sqe, tag, t)) {
      fuse_refusals_.push_back(refusal);
      return false;
    }
    ++fused_ops_;
    if (!t.registered) t.registered = Register(t, tag);
    return true;
  }

  // What the patched kernel would refuse of `sqe` as a slave on `tag`'s
  // request, or null.
  const char* FuseRefusal(const io_uring_sqe& sqe, uint16_t tag, const TagSlot& t) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    bool fills = false;  // the op writes into the pages
    switch (sqe.opcode) {
      case IORING_OP_RECV: fills = true; [[fallthrough]];
      case IORING_OP_SEND:
      case IORING_OP_SEND_ZC:
        if ((sqe.ioprio & IORING_RECVSEND_FIXED_BUF) == 0) {
          return "a socket op without IORING_RECVSEND_FIXED_BUF";
        }
        break;
      case IORING_OP_READ_FIXED: fills = true; break;
      case IORING_OP_WRITE_FIXED: break;
      default: return "an op that may not be a slave";
    }
    // The kernel finds the request by its tag: an op after the commit
    // fails, or is lent the tag's next request.
    if (t.fetching) return "an op on a tag whose request was committed";
    if (!fused_) return "a fused op on a device without the fused data path";
    if (sqe.buf_index != tag) return "an op on another tag's buffer";
    const uint64_t base = reinterpret_cast<uintptr_t>(t.pages.data());
    if (sqe.addr < base || sqe.addr - base + sqe.len > uint64_t{t.desc.nr_sectors} << 9) {
      return "a range outside the request";
    }
    if (fills != (t.op == ublk::kIoOpRead)) {
      return fills ? "a WRITE request's pages written into" : "a READ request's pages read";
    }
    return nullptr;
  }

  const uint16_t depth_;
  absl::Mutex mu_;
  std::optional<Ring> ring_;
  io_uring* worker_ring_ ABSL_GUARDED_BY(mu_) = nullptr;
  int worker_ring_fd_ ABSL_GUARDED_BY(mu_) = -1;
  std::vector<TagSlot> tags_ ABSL_GUARDED_BY(mu_);
  const uint32_t zero_copy_bytes_;
  std::deque<Commit> commits_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool fused_ ABSL_GUARDED_BY(mu_) = false;
  bool batch_ ABSL_GUARDED_BY(mu_) = false;
  bool fetch_armed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t fetch_user_data_ ABSL_GUARDED_BY(mu_) = 0;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<uint16_t> held_ ABSL_GUARDED_BY(mu_);
  uint16_t next_bid_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint16_t, std::vector<uint16_t>> fetched_ ABSL_GUARDED_BY(mu_);
  int fetches_armed_ ABSL_GUARDED_BY(mu_) = 0;
  int batch_commits_ ABSL_GUARDED_BY(mu_) = 0;
  int batch_committed_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> batch_refusals_ ABSL_GUARDED_BY(mu_);
  bool prep_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool fail_prep_ ABSL_GUARDED_BY(mu_) = false;
  int refuse_commit_of_ ABSL_GUARDED_BY(mu_) = -1;
  std::optional<Ring> inbox_;  // receives the worker's batched commands' tokens
  uint64_t last_token_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<uint64_t> unsubmitted_ ABSL_GUARDED_BY(mu_);
  int fused_ops_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> fuse_refusals_ ABSL_GUARDED_BY(mu_);
};

class FakeUblkQueue final : public UblkQueue {
 public:
  explicit FakeUblkQueue(FakeUblkKernel& kernel) : kernel_(kernel) {}
  absl::Status Open(io_uring* ring, bool batch) override {
    kernel_.Open(ring, batch);
    return absl::OkStatus();
  }
  void PrepBatch(io_uring_sqe* sqe, uint32_t cmd_op, uint16_t flags, const uint8_t* elems,
                 uint16_t nr_elem, uint8_t elem_bytes, uint64_t user_data) override {
    kernel_.PrepBatch(sqe, cmd_op, flags, elems, nr_elem, elem_bytes, user_data);
  }
  void PrepFetchBatch(io_uring_sqe* sqe, uint64_t user_data) override {
    kernel_.PrepFetchBatch(sqe, user_data);
  }
  bool TakeFetched(const io_uring_cqe& cqe, std::vector<uint16_t>* tags) override {
    return kernel_.TakeFetched(cqe, tags);
  }
  ublk::ublksrv_io_desc Desc(uint16_t tag) const override { return kernel_.Desc(tag); }
  void Prep(io_uring_sqe* sqe, uint32_t cmd_op, uint16_t tag, int32_t result, uint64_t addr,
            uint64_t user_data) override {
    kernel_.Prep(sqe, cmd_op, tag, result, addr, user_data);
  }
  uint64_t FixedBufferBase(uint16_t tag) const override { return kernel_.PagesOf(tag); }
  bool Fuse(io_uring_sqe* sqe, uint16_t tag, uint64_t /*slave_user_data*/) override {
    return kernel_.Fuse(sqe, tag);
  }

 private:
  FakeUblkKernel& kernel_;
};

inline std::unique_ptr<UblkQueue> FakeUblkKernel::MakeQueue() {
  return std::make_unique<FakeUblkQueue>(*this);
}

}  // namespace ublkgw::engine::testing

#endif  // UBLKGW_TESTS_UNIT_ENGINE_FAKE_UBLK_QUEUE_H_
