// One send chain: the ops that put a batch of requests onto the NBD stream,
// in order, and what is left of each after a short send. Pure: it says
// which ops to submit and keeps their memory (iovecs, msghdrs) alive; the
// queue worker turns them into linked SQEs and reports their completions.
//
// Runs of user memory (headers; in the copy path also payloads, from our
// buffers) go as one SENDMSG op each; a zero-copy payload is an op of its
// own on fixed buffer `tag`. The ops are linked, so when one comes up
// short the kernel cancels those after it: once every op has completed,
// what was not sent is submitted again (Pending()), in order.
// Threads: the queue worker's only.
#ifndef UBLKGW_ENGINE_SEND_CHAIN_H_
#define UBLKGW_ENGINE_SEND_CHAIN_H_

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/data_path.h"

namespace ublkgw::engine {

class SendChain {
 public:
  struct Op {
    bool fixed = false;
    WriteOp write = WriteOp::kSend;  // fixed only
    uint16_t tag = 0;                // fixed: whose buffer
    uint32_t offset = 0;             // fixed: the part not sent yet
    uint32_t len = 0;
    uint32_t iov_begin = 0;  // memory: the iovecs not sent yet
    uint32_t iov_end = 0;
    uint32_t batch_begin = 0;  // memory: the tags whose payloads it carries
    uint32_t batch_end = 0;
    msghdr msg{};  // memory: built by Msg(), alive while the op is in the kernel
    bool done = false;
  };

  // `max_ops`: the most ops one chain may hold (its memory is reserved).
  explicit SendChain(size_t max_ops);

  bool empty() const { return ops_.empty(); }
  size_t size() const { return ops_.size(); }
  Op& op(size_t index) { return ops_[index]; }

  // Building, in stream order. A memory run continues until a fixed op.
  void AddMemory(const void* data, size_t len);
  // A payload in user memory, for `tag` (copy path): released at End().
  void AddMemoryPayload(uint16_t tag, const void* data, size_t len);
  void AddFixed(uint16_t tag, WriteOp write, uint32_t len);
  // Explicit registration: `tag`'s REGISTER_IO_BUF heads the chain.
  void AddRegister(uint16_t tag) { registers_.push_back(tag); }
  const std::vector<uint16_t>& registers() const { return registers_; }

  // Ops not sent yet (to submit, in order, linked).
  size_t Pending() const;
  // The msghdr of memory op `index`, pointing at what it has not sent.
  msghdr* Msg(size_t index);
  // The kernel holds `n` ops of the chain now.
  void Submitted(size_t n) { in_kernel_ = n; }
  size_t in_kernel() const { return in_kernel_; }

  // Op `index` completed (whatever its result). False when no op of the
  // chain was in the kernel under that index: a completion we cannot
  // explain.
  bool Completed(size_t index);
  // `sent` bytes of op `index` went out. Returns true when that finished a
  // fixed op (its tag's buffer is free again).
  bool Advance(size_t index, size_t sent);

  // The chain is over (all sent, or the connection failed). Fills
  // `unsent` with the tags whose payload did not all leave, and `release`
  // with the tags whose buffer the chain still held (fixed ops not done,
  // every memory payload); then empties the chain.
  void End(std::vector<uint16_t>* unsent, std::vector<uint16_t>* release);

 private:
  std::vector<Op> ops_;
  std::vector<iovec> iov_;
  struct Payload {
    uint16_t tag;
    uint32_t iov;  // its index in iov_
  };
  std::vector<Payload> batch_;  // memory payloads, in order
  std::vector<uint16_t> registers_;
  size_t in_kernel_ = 0;
};

}  // namespace ublkgw::engine

#endif  // UBLKGW_ENGINE_SEND_CHAIN_H_
