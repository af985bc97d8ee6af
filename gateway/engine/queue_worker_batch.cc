// QueueWorker on a device with UBLK_F_BATCH_IO: one PREP_IO_CMDS hands
// every tag to the kernel at start; a multishot FETCH_IO_CMDS brings the
// tags of new requests, many to a completion, in buffers the queue
// provides (UblkQueue::TakeFetched); and the commits of a loop turn go in
// one COMMIT_IO_CMDS. A committed tag goes back to the kernel, which hands
// it out again through the fetch; so when the fetch ends for good (the
// device stops), every tag the kernel holds is done, and each tag still
// ours is done once its commit completes.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "engine/queue_worker.h"
#include "engine/queue_worker_ops.h"
#include "glog/logging.h"

namespace ublkgw::engine {

using worker_ops::CommitBatchData;
using worker_ops::CommitBufferOf;
using worker_ops::Op;
using worker_ops::UserData;

// The copy path names each tag's buffer in its element; zero copy lets the
// driver register the request's pages in slot `tag` (buf_index).
uint8_t QueueWorker::BatchElemBytes() const {
  return config_.plan.zero_copy ? sizeof(ublk::ublk_elem_header)
                                : sizeof(ublk::ublk_elem_header) + sizeof(uint64_t);
}

uint16_t QueueWorker::BatchFlags() const {
  return config_.plan.zero_copy ? 0 : ublk::kBatchFHasBufAddr;
}

void QueueWorker::AppendBatchElem(std::vector<uint8_t>* elems, uint16_t tag,
                                  int32_t result) const {
  ublk::ublk_elem_header header{};
  header.tag = tag;
  header.buf_index = config_.plan.zero_copy ? tag : 0;
  header.result = result;
  const size_t at = elems->size();
  elems->resize(at + BatchElemBytes());
  std::memcpy(elems->data() + at, &header, sizeof(header));
  if (!config_.plan.zero_copy) {
    const uint64_t addr = reinterpret_cast<uintptr_t>(CopyBuffer(tag));
    std::memcpy(elems->data() + at + sizeof(header), &addr, sizeof(addr));
  }
}

void QueueWorker::PrepAndFetchBatch() {
  // Every tag in one PREP_IO_CMDS, then the fetch that brings requests.
  prep_elems_.clear();
  for (uint16_t tag = 0; tag < config_.depth; ++tag) AppendBatchElem(&prep_elems_, tag, 0);
  io_uring_sqe* sqe = Sqe();
  queue_->PrepBatch(sqe, ublk::kIoPrepIoCmds, BatchFlags(), prep_elems_.data(), config_.depth,
                    BatchElemBytes(), UserData(Op::kBatchPrep));
  sqe->flags |= IOSQE_IO_LINK;  // the fetch goes once every tag is prepared
  ArmFetchBatch();
}

void QueueWorker::ArmFetchBatch() {
  queue_->PrepFetchBatch(Sqe(), UserData(Op::kBatchFetch));
  fetch_armed_ = true;
  fetch_retry_ns_ = 0;
}

void QueueWorker::OnPrepBatch(int res) {
  if (res == 0) return;
  // The fetch linked behind it is cancelled: no request ever comes.
  LOG(ERROR) << "queue " << config_.q_id << ": PREP_IO_CMDS failed: " << res;
  if (first_error_.ok()) first_error_ = ErrnoToStatus(-res, "UBLK_U_IO_PREP_IO_CMDS");
}

void QueueWorker::OnFetchBatch(const io_uring_cqe& cqe) {
  if ((cqe.flags & IORING_CQE_F_BUFFER) != 0) {
    fetched_.clear();
    if (!queue_->TakeFetched(cqe, &fetched_)) {
      Fault(absl::StrCat("a FETCH_IO_CMDS completion that is no list of tags (", cqe.res,
                         " bytes, flags 0x", absl::Hex(cqe.flags), ")"));
    }
    if (!fetched_.empty()) fetch_failures_ = 0;
    for (uint16_t tag : fetched_) {
      if (tag >= config_.depth) {
        Fault(absl::StrCat("FETCH_IO_CMDS brought tag ", tag, " of a queue of depth ",
                           config_.depth));
        continue;
      }
      StartRequest(tag);
    }
  }
  if ((cqe.flags & IORING_CQE_F_MORE) != 0) return;
  fetch_armed_ = false;
  // UBLK_IO_RES_ABORT (-ENODEV): the device is stopping (or the ring
  // going); -ECANCELED: PREP_IO_CMDS, linked ahead of the first fetch,
  // failed. Either way no request comes any more.
  if (cqe.res == -ENODEV || cqe.res == -ECANCELED) {
    EndFetching();
    return;
  }
  // It ran out of buffers (-ENOBUFS; we gave them back already), ended
  // with its last one, or failed (-ENOMEM when the kernel could not
  // allocate it, say) while the device runs: fetch again, or no request
  // would ever come to this queue. After a few failures in a row, once a
  // second (MaybeRearmFetch), so a lasting one does not spin.
  if (cqe.res < 0 && cqe.res != -ENOBUFS) {
    ++fetch_failures_;
    LOG(ERROR) << "queue " << config_.q_id << ": FETCH_IO_CMDS failed (" << fetch_failures_
               << " in a row): " << cqe.res << "; fetching again";
    if (fetch_failures_ > kQuickFetchRetries) {
      fetch_retry_ns_ = now_ns_ + 1'000'000'000;
      return;
    }
  }
  if (!fetch_over_) ArmFetchBatch();
}

void QueueWorker::MaybeRearmFetch() {
  if (fetch_armed_ || fetch_over_ || fetch_retry_ns_ == 0 || now_ns_ < fetch_retry_ns_) return;
  ArmFetchBatch();
}

void QueueWorker::EndFetching() {
  fetch_over_ = true;
  // A tag whose commit is prepared or in flight is done once that
  // completes (OnCommitBatch): the worker must not end before it is sent.
  std::vector<bool> committing(config_.depth, false);
  auto mark = [&](const std::vector<uint8_t>& elems) {
    for (size_t at = 0; at + sizeof(ublk::ublk_elem_header) <= elems.size();
         at += BatchElemBytes()) {
      ublk::ublk_elem_header elem{};
      std::memcpy(&elem, elems.data() + at, sizeof(elem));
      if (elem.tag < config_.depth) committing[elem.tag] = true;
    }
  };
  mark(pending_commits_);
  for (const CommitBuffer& buffer : commit_buffers_) {
    if (buffer.busy) mark(buffer.elems);
  }
  for (uint16_t tag = 0; tag < config_.depth; ++tag) {
    if (tags_[tag].state == TagState::kFetching && !committing[tag]) tags_.Abort(tag);
  }
}

void QueueWorker::FlushCommits() {
  if (pending_commits_.empty()) return;
  size_t index = 0;
  while (index < commit_buffers_.size() && commit_buffers_[index].busy) ++index;
  if (index == commit_buffers_.size()) commit_buffers_.emplace_back();
  CommitBuffer& buffer = commit_buffers_[index];
  buffer.elems.swap(pending_commits_);
  pending_commits_.clear();
  buffer.busy = true;
  const auto count = static_cast<uint16_t>(buffer.elems.size() / BatchElemBytes());
  queue_->PrepBatch(Sqe(), ublk::kIoCommitIoCmds, BatchFlags(), buffer.elems.data(), count,
                    BatchElemBytes(), CommitBatchData(static_cast<uint16_t>(index)));
}

void QueueWorker::OnCommitBatch(uint64_t user_data, int res) {
  const uint16_t index = CommitBufferOf(user_data);
  if (index >= commit_buffers_.size() || !commit_buffers_[index].busy) {
    Fault(absl::StrCat("a COMMIT_IO_CMDS completion for buffer ", index, ", which is not in use"));
    return;
  }
  CommitBuffer& buffer = commit_buffers_[index];
  buffer.busy = false;
  const size_t elem_bytes = BatchElemBytes();
  const size_t count = buffer.elems.size() / elem_bytes;
  // The kernel commits in order and stops at the first element it
  // refuses: res is the bytes of elements it committed (or an error when
  // it committed none). The refused one is a bug of ours (a tag it does not
  // think is ours): its request fails with the queue. Those after it were
  // never looked at and are still ours: they go in the next commit.
  const size_t done = res < 0 ? 0 : std::min(count, static_cast<size_t>(res) / elem_bytes);
  size_t finished = done;  // committed, or refused
  if (done < count) {
    ublk::ublk_elem_header refused{};
    std::memcpy(&refused, buffer.elems.data() + done * elem_bytes, sizeof(refused));
    pending_commits_.insert(pending_commits_.end(), buffer.elems.begin() + (done + 1) * elem_bytes,
                            buffer.elems.end());
    finished = done + 1;
    Fault(absl::StrCat("COMMIT_IO_CMDS committed ", done, " of ", count, " requests (",
                       res < 0 ? absl::StrCat("error ", res) : absl::StrCat(res, " bytes"),
                       "); the kernel refused tag ", refused.tag, ", ", count - done - 1,
                       " after it go again"));
  }
  if (!fetch_over_) return;
  // The device stops: a tag committed now is not handed out again.
  for (size_t i = 0; i < finished; ++i) {
    ublk::ublk_elem_header elem{};
    std::memcpy(&elem, buffer.elems.data() + i * elem_bytes, sizeof(elem));
    if (elem.tag < config_.depth && tags_[elem.tag].state == TagState::kFetching) {
      tags_.Abort(elem.tag);
    }
  }
}

}  // namespace ublkgw::engine
