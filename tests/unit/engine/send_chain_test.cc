// SendChain: how a batch becomes ops, and what is left after a short send
// cut anywhere.
#include "engine/send_chain.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ublkgw::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// The bytes a memory op would send now.
std::string Bytes(SendChain& chain, size_t index) {
  std::string out;
  const msghdr* m = chain.Msg(index);
  for (size_t i = 0; i < m->msg_iovlen; ++i) {
    out.append(static_cast<const char*>(m->msg_iov[i].iov_base), m->msg_iov[i].iov_len);
  }
  return out;
}

TEST(SendChainTest, MemoryRunsAreOneOpAndFixedPayloadsTheirOwn) {
  const std::string h1 = "HEAD1", h2 = "HEAD2", h3 = "HEAD3";
  SendChain chain(8);
  chain.AddMemory(h1.data(), h1.size());
  chain.AddFixed(1, WriteOp::kSend, 4096);
  chain.AddMemory(h2.data(), h2.size());
  chain.AddMemory(h3.data(), h3.size());
  ASSERT_EQ(chain.size(), 3u);
  EXPECT_EQ(chain.Pending(), 3u);
  EXPECT_FALSE(chain.op(0).fixed);
  EXPECT_TRUE(chain.op(1).fixed);
  EXPECT_EQ(chain.op(1).tag, 1);
  EXPECT_EQ(chain.op(1).len, 4096u);
  EXPECT_EQ(Bytes(chain, 0), "HEAD1");
  EXPECT_EQ(Bytes(chain, 2), "HEAD2HEAD3");
}

// A memory run cut at every byte: what is left is exactly the rest, and
// the payloads not all out are the ones the chain reports unsent.
TEST(SendChainTest, AShortMemorySendLeavesExactlyTheRest) {
  const std::string header = "HDR-", payload_a = "aaaaaaaa", header_b = "HDR2", payload_b = "bbbb";
  const std::string all = header + payload_a + header_b + payload_b;
  for (size_t cut = 0; cut <= all.size(); ++cut) {
    SendChain chain(8);
    chain.AddMemory(header.data(), header.size());
    chain.AddMemoryPayload(7, payload_a.data(), payload_a.size());
    chain.AddMemory(header_b.data(), header_b.size());
    chain.AddMemoryPayload(9, payload_b.data(), payload_b.size());
    chain.Submitted(1);
    ASSERT_TRUE(chain.Completed(0));
    EXPECT_FALSE(chain.Advance(0, cut));
    EXPECT_EQ(chain.op(0).done, cut == all.size());
    if (cut < all.size()) {
      EXPECT_EQ(Bytes(chain, 0), all.substr(cut)) << "cut " << cut;
    }
    std::vector<uint16_t> unsent, release;
    chain.End(&unsent, &release);
    std::vector<uint16_t> want;
    if (cut < header.size() + payload_a.size()) want.push_back(7);
    if (cut < all.size()) want.push_back(9);
    EXPECT_EQ(unsent, want) << "cut " << cut;
    EXPECT_THAT(release, ElementsAre(7, 9));  // every payload buffer, sent or not
    EXPECT_TRUE(chain.empty());
  }
}

TEST(SendChainTest, AShortFixedSendMovesItsOffset) {
  SendChain chain(4);
  chain.AddFixed(3, WriteOp::kSendZc, 8192);
  chain.Submitted(1);
  ASSERT_TRUE(chain.Completed(0));
  EXPECT_FALSE(chain.Advance(0, 3000));
  EXPECT_EQ(chain.op(0).offset, 3000u);
  EXPECT_EQ(chain.op(0).len, 5192u);
  EXPECT_EQ(chain.Pending(), 1u);
  chain.Submitted(1);
  ASSERT_TRUE(chain.Completed(0));
  EXPECT_TRUE(chain.Advance(0, 5192));  // all out: the buffer is free
  EXPECT_EQ(chain.Pending(), 0u);
  EXPECT_FALSE(chain.Advance(0, 1));    // nothing more to send
  std::vector<uint16_t> unsent, release;
  chain.End(&unsent, &release);
  EXPECT_THAT(unsent, IsEmpty());
  EXPECT_THAT(release, IsEmpty());  // released when it was all sent
}

TEST(SendChainTest, AChainCutShortReportsItsUnsentFixedPayloads) {
  const std::string h = "H";
  SendChain chain(8);
  chain.AddMemory(h.data(), h.size());
  chain.AddFixed(1, WriteOp::kSend, 100);
  chain.AddMemory(h.data(), h.size());
  chain.AddFixed(2, WriteOp::kSend, 100);
  chain.Submitted(4);
  for (size_t i = 0; i < 4; ++i) ASSERT_TRUE(chain.Completed(i));
  chain.Advance(0, 1);
  chain.Advance(1, 40);  // then the connection failed; the rest cancelled
  std::vector<uint16_t> unsent, release;
  chain.End(&unsent, &release);
  EXPECT_THAT(unsent, UnorderedElementsAre(1, 2));
  EXPECT_THAT(release, UnorderedElementsAre(1, 2));
}

TEST(SendChainTest, CompletionsItCannotExplainAreRefused) {
  SendChain chain(4);
  const std::string h = "H";
  chain.AddMemory(h.data(), h.size());
  EXPECT_FALSE(chain.Completed(0));  // nothing submitted
  chain.Submitted(1);
  EXPECT_FALSE(chain.Completed(5));  // no such op
  EXPECT_TRUE(chain.Completed(0));
  EXPECT_FALSE(chain.Completed(0));  // completed twice
}

TEST(SendChainTest, RegistersHeadTheChainUntilItEnds) {
  SendChain chain(4);
  chain.AddRegister(4);
  chain.AddRegister(6);
  EXPECT_THAT(chain.registers(), ElementsAre(4, 6));
  std::vector<uint16_t> unsent, release;
  chain.End(&unsent, &release);
  EXPECT_THAT(chain.registers(), IsEmpty());
}

}  // namespace
}  // namespace ublkgw::engine
