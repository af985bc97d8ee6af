// Writes the seed corpora of the fuzzers: well-formed exchanges of each
// kind, which the fuzzers then mutate.
// Usage: make_seeds REPLY_DIR HANDSHAKE_DIR
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "nbd/bytes.h"
#include "nbd/wire.h"

namespace {

using namespace ublkgw::nbd;

void Save(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}

// Reply seed prefix: mode, command index, length (512-byte units - 1).
std::string ReplyPrefix(uint8_t mode, uint8_t cmd, uint16_t blocks_minus_one) {
  return ByteWriter().Put(mode).Put(cmd).Put(blocks_minus_one).Take();
}

std::string Chunk(uint16_t flags, uint16_t type, const std::string& payload) {
  return ByteWriter()
      .Put(kStructuredReplyMagic).Put(flags).Put(type).Put(uint64_t{1})
      .Put(static_cast<uint32_t>(payload.size())).PutBytes(payload).Take();
}

std::string OptReply(uint32_t option, uint32_t type, const std::string& data) {
  return ByteWriter()
      .Put(kOptReplyMagic).Put(option).Put(type).Put(static_cast<uint32_t>(data.size()))
      .PutBytes(data).Take();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  const std::string reply = argv[1], handshake = argv[2];
  const uint64_t off = 1 << 20;

  Save(reply, "simple-read", ReplyPrefix(0, 0, 0) +
       ByteWriter().Put(kSimpleReplyMagic).Put(uint32_t{0}).Put(uint64_t{1}).Take() +
       std::string(512, 'x'));
  Save(reply, "simple-error", ReplyPrefix(0, 1, 0) +
       ByteWriter().Put(kSimpleReplyMagic).Put(kEIo).Put(uint64_t{1}).Take());
  Save(reply, "structured-read-two-chunks", ReplyPrefix(1, 0, 1) +
       Chunk(0, kReplyTypeOffsetData, ByteWriter().Put(off + 512).PutBytes(std::string(512, 'b')).Take()) +
       Chunk(kReplyFlagDone, kReplyTypeOffsetData, ByteWriter().Put(off).PutBytes(std::string(512, 'a')).Take()));
  Save(reply, "structured-hole", ReplyPrefix(1, 0, 7) +
       Chunk(kReplyFlagDone, kReplyTypeOffsetHole, ByteWriter().Put(off).Put(uint32_t{4096}).Take()));
  Save(reply, "structured-error", ReplyPrefix(1, 0, 0) +
       Chunk(kReplyFlagDone, kReplyTypeError, ByteWriter().Put(kEIo).Put(uint16_t{3}).PutBytes("bad").Take()));
  Save(reply, "structured-error-offset", ReplyPrefix(1, 0, 0) +
       Chunk(kReplyFlagDone, kReplyTypeErrorOffset,
             ByteWriter().Put(kEIo).Put(uint16_t{0}).Put(off + 10).Take()));
  Save(reply, "structured-none", ReplyPrefix(1, 2, 0) + Chunk(kReplyFlagDone, kReplyTypeNone, ""));
  Save(reply, "extended-read", ReplyPrefix(2, 0, 0) +
       ByteWriter().Put(kExtendedReplyMagic).Put(kReplyFlagDone).Put(kReplyTypeOffsetData)
           .Put(uint64_t{1}).Put(off).Put(uint64_t{8 + 512}).Put(off).PutBytes(std::string(512, 'e')).Take());

  // The same reads fed as zero copy feeds them (the top bit of the
  // command byte; 132 + i is still command i).
  for (const char* name : {"simple-read", "structured-read-two-chunks", "structured-hole",
                           "extended-read"}) {
    std::ifstream in(reply + "/" + name, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    bytes[1] = static_cast<char>(132 + bytes[1]);
    Save(reply, std::string("zero-copy-") + name, bytes);
  }

  const std::string greeting =
      ByteWriter().Put(kInitMagic).Put(kOptsMagic).Put(uint16_t(kFlagFixedNewstyle | kFlagNoZeroes)).Take();
  const std::string go_ok =
      OptReply(kOptGo, kRepInfo, ByteWriter().Put(kInfoBlockSize).Put(uint32_t{512}).Put(uint32_t{4096})
                                     .Put(uint32_t{1 << 20}).Take()) +
      OptReply(kOptGo, kRepInfo, ByteWriter().Put(kInfoExport).Put(uint64_t{1 << 30}).Put(uint16_t{0x1ed}).Take()) +
      OptReply(kOptGo, kRepAck, "");
  // options byte 14: export "disk", structured replies, extended headers.
  Save(handshake, "go-structured", std::string(1, 14) + greeting +
       OptReply(kOptExtendedHeaders, kRepErrUnsup, "") + OptReply(kOptStructuredReply, kRepAck, "") + go_ok);
  Save(handshake, "go-extended", std::string(1, 14) + greeting + OptReply(kOptExtendedHeaders, kRepAck, "") + go_ok);
  Save(handshake, "go-unknown-export", std::string(1, 2) + greeting +
       OptReply(kOptGo, kRepErrUnknown, "no such export"));
  Save(handshake, "export-name-fallback", std::string(1, 2) + greeting + OptReply(kOptGo, kRepErrUnsup, "") +
       ByteWriter().Put(uint64_t{1 << 20}).Put(uint16_t{1}).Take());
  Save(handshake, "list", std::string(1, 1) + greeting +
       OptReply(kOptList, kRepServer, ByteWriter().Put(uint32_t{4}).PutBytes("disk").PutBytes("desc").Take()) +
       OptReply(kOptList, kRepAck, "") + OptReply(kOptAbort, kRepAck, ""));
  return 0;
}
