#include "engine/send_chain.h"

namespace ublkgw::engine {

SendChain::SendChain(size_t max_ops) {
  ops_.reserve(max_ops);
  iov_.reserve(max_ops);
  batch_.reserve(max_ops);
  registers_.reserve(max_ops);
}

void SendChain::AddMemory(const void* data, size_t len) {
  if (ops_.empty() || ops_.back().fixed) {
    Op op;
    op.iov_begin = op.iov_end = static_cast<uint32_t>(iov_.size());
    op.batch_begin = op.batch_end = static_cast<uint32_t>(batch_.size());
    ops_.push_back(op);
  }
  iov_.push_back({const_cast<void*>(data), len});
  ops_.back().iov_end++;
}

void SendChain::AddMemoryPayload(uint16_t tag, const void* data, size_t len) {
  AddMemory(data, len);
  batch_.push_back({tag, static_cast<uint32_t>(iov_.size() - 1)});
  ops_.back().batch_end++;
}

void SendChain::AddFixed(uint16_t tag, WriteOp write, uint32_t len) {
  Op op;
  op.fixed = true;
  op.write = write;
  op.tag = tag;
  op.len = len;
  ops_.push_back(op);
}

size_t SendChain::Pending() const {
  size_t n = 0;
  for (const Op& op : ops_) n += op.done ? 0 : 1;
  return n;
}

msghdr* SendChain::Msg(size_t index) {
  Op& op = ops_[index];
  op.msg = {};
  op.msg.msg_iov = iov_.data() + op.iov_begin;
  op.msg.msg_iovlen = op.iov_end - op.iov_begin;
  return &op.msg;
}

bool SendChain::Completed(size_t index) {
  if (index >= ops_.size() || in_kernel_ == 0) return false;
  --in_kernel_;
  return true;
}

bool SendChain::Advance(size_t index, size_t sent) {
  Op& op = ops_[index];
  if (op.done) return false;
  if (op.fixed) {
    const auto n = static_cast<uint32_t>(sent < op.len ? sent : op.len);
    op.offset += n;
    op.len -= n;
    op.done = op.len == 0;
    return op.done;
  }
  while (op.iov_begin < op.iov_end && sent >= iov_[op.iov_begin].iov_len) {
    sent -= iov_[op.iov_begin].iov_len;
    ++op.iov_begin;
  }
  if (op.iov_begin < op.iov_end) {
    iovec& partial = iov_[op.iov_begin];
    partial.iov_base = static_cast<uint8_t*>(partial.iov_base) + sent;
    partial.iov_len -= sent;
  }
  op.done = op.iov_begin == op.iov_end;
  return false;
}

void SendChain::End(std::vector<uint16_t>* unsent, std::vector<uint16_t>* release) {
  unsent->clear();
  release->clear();
  for (const Op& op : ops_) {
    if (op.fixed) {
      if (!op.done) {
        unsent->push_back(op.tag);
        release->push_back(op.tag);
      }
    } else {
      // A payload is out once the op has gone past its iovec.
      for (uint32_t i = op.batch_begin; i < op.batch_end; ++i) {
        if (batch_[i].iov >= op.iov_begin) unsent->push_back(batch_[i].tag);
      }
    }
  }
  for (const Payload& p : batch_) release->push_back(p.tag);
  ops_.clear();
  iov_.clear();
  batch_.clear();
  registers_.clear();
  in_kernel_ = 0;
}

}  // namespace ublkgw::engine
