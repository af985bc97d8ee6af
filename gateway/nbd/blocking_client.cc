#include "nbd/blocking_client.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "nbd/bytes.h"
#include "nbd/protocol_error.h"
#include "nbd/request_rules.h"
#include "nbd/wire.h"

namespace ublkgw::nbd {

namespace {

absl::Status ServerError(uint32_t nbd_error, absl::string_view message) {
  absl::Status s = ErrnoToStatus(-NbdErrorToNegErrno(nbd_error), "the NBD server failed the request");
  if (message.empty()) return s;
  return absl::Status(s.code(), absl::StrCat(s.message(), " (server says: ", message, ")"));
}

}  // namespace

absl::StatusOr<BlockingClient> BlockingClient::Connect(const Uri& uri, ClientOptions options) {
  auto fd = nbd::Connect(uri, options.timeout);
  if (!fd.ok()) return fd.status();
  options.handshake.export_name = uri.export_name;
  return Open(Stream(*std::move(fd), options.timeout), options.handshake);
}

absl::StatusOr<BlockingClient> BlockingClient::Open(Stream stream, const HandshakeOptions& options) {
  auto info = Negotiate(stream, options);
  if (!info.ok()) return info.status();
  return BlockingClient(std::move(stream), *std::move(info));
}

absl::Status BlockingClient::Read(uint64_t offset, std::span<uint8_t> out) {
  return Execute({kCmdRead, 0, 0, offset, out.size()}, {}, out);
}

absl::Status BlockingClient::Write(uint64_t offset, std::span<const uint8_t> data, bool fua) {
  return Execute({kCmdWrite, fua ? kCmdFlagFua : uint16_t{0}, 0, offset, data.size()}, data, {});
}

absl::Status BlockingClient::Flush() { return Execute({kCmdFlush, 0, 0, 0, 0}, {}, {}); }

absl::Status BlockingClient::Trim(uint64_t offset, uint64_t length, bool fua) {
  return Execute({kCmdTrim, fua ? kCmdFlagFua : uint16_t{0}, 0, offset, length}, {}, {});
}

absl::Status BlockingClient::WriteZeroes(uint64_t offset, uint64_t length, uint16_t flags) {
  return Execute({kCmdWriteZeroes, flags, 0, offset, length}, {}, {});
}

absl::Status BlockingClient::Cache(uint64_t offset, uint64_t length) {
  return Execute({kCmdCache, 0, 0, offset, length}, {}, {});
}

absl::Status BlockingClient::Disconnect() {
  if (broken_) return absl::OkStatus();
  uint8_t header[kExtendedRequestSize];
  auto n = EncodeRequest({kCmdDisc, 0, next_cookie_++, 0, 0}, info_.mode, header);
  if (!n.ok()) return n.status();
  broken_ = true;  // nothing may follow DISC
  return stream_.WriteFull({header, *n});
}

absl::Status BlockingClient::Execute(Request request, std::span<const uint8_t> write_data,
                                     std::span<uint8_t> read_into) {
  if (broken_) {
    return absl::FailedPreconditionError(
        "the NBD connection was dropped after an error; connect again");
  }
  if (absl::Status s = ValidateRequest(request, info_); !s.ok()) return s;
  request.cookie = next_cookie_++;
  uint8_t header[kExtendedRequestSize];
  auto n = EncodeRequest(request, info_.mode, header);
  if (!n.ok()) return n.status();
  absl::Status sent = stream_.WriteFull({header, *n});
  if (sent.ok() && !write_data.empty()) sent = stream_.WriteFull(write_data);
  absl::Status server_error;
  const absl::Status connection = sent.ok() ? ReceiveReply(request, read_into, server_error) : sent;
  // A server's error leaves the connection usable; a failed stream or a
  // protocol violation does not.
  if (!connection.ok()) {
    broken_ = true;
    return connection;
  }
  return server_error;
}

absl::Status BlockingClient::ReceiveReply(const Request& request, std::span<uint8_t> read_into,
                                          absl::Status& server_error) {
  ReadCoverage coverage(request.type == kCmdRead ? request.length : 0);
  for (;;) {
    uint8_t header_bytes[kExtendedReplySize];
    if (absl::Status s = stream_.ReadFull({header_bytes, kReplyMagicSize}); !s.ok()) return s;
    auto size = ReplyHeaderSize(LoadBe<uint32_t>(header_bytes), info_.mode);
    if (!size.ok()) return size.status();
    if (absl::Status s = stream_.ReadFull({header_bytes + kReplyMagicSize, *size - kReplyMagicSize});
        !s.ok()) {
      return s;
    }
    auto header = DecodeReplyHeader({header_bytes, *size}, info_.mode);
    if (!header.ok()) return header.status();
    if (header->cookie != request.cookie) {
      return ProtocolViolation(ProtocolError::kUnknownCookie,
                               absl::StrCat("reply for cookie 0x", absl::Hex(header->cookie),
                                            " while only 0x", absl::Hex(request.cookie),
                                            " is in flight"));
    }
    if (!header->structured) {
      if (absl::Status s = CheckSimpleReply(*header, request, info_.mode); !s.ok()) return s;
      if (header->error != 0) {
        server_error = ServerError(header->error, "");
      } else if (request.type == kCmdRead) {
        if (absl::Status s = stream_.ReadFull(read_into); !s.ok()) return s;
      }
      break;
    }
    if (absl::Status s = ReceiveChunk(*header, request, read_into, coverage, server_error); !s.ok()) {
      return s;
    }
    if (header->done()) {
      if (server_error.ok() && request.type == kCmdRead && !coverage.complete()) {
        return ProtocolViolation(ProtocolError::kIncompleteRead,
                                 absl::StrCat("read of ", request.length,
                                              " bytes ended before all of it arrived"));
      }
      break;
    }
  }
  return absl::OkStatus();
}

absl::Status BlockingClient::ReceiveChunk(const ReplyHeader& header, const Request& request,
                                          std::span<uint8_t> read_into, ReadCoverage& coverage,
                                          absl::Status& server_error) {
  auto prefix_size = ChunkPrefixSize(header, request, info_.mode);
  if (!prefix_size.ok()) return prefix_size.status();
  uint8_t prefix[16];
  if (absl::Status s = stream_.ReadFull({prefix, *prefix_size}); !s.ok()) return s;
  auto chunk = DecodeChunk(header, {prefix, *prefix_size}, request, info_.mode);
  if (!chunk.ok()) return chunk.status();
  switch (chunk->kind) {
    case Chunk::Kind::kNone:
      return absl::OkStatus();
    case Chunk::Kind::kData:
    case Chunk::Kind::kHole: {
      const uint64_t at = chunk->offset - request.offset;
      if (absl::Status s = coverage.Add(at, chunk->length); !s.ok()) return s;
      std::span<uint8_t> dest = read_into.subspan(at, chunk->length);
      if (chunk->kind == Chunk::Kind::kHole) {
        std::memset(dest.data(), 0, dest.size());
        return absl::OkStatus();
      }
      return stream_.ReadFull(dest);
    }
    case Chunk::Kind::kError: {
      std::string message(chunk->message_length, '\0');
      if (absl::Status s = stream_.ReadFull({reinterpret_cast<uint8_t*>(message.data()), message.size()});
          !s.ok()) {
        return s;
      }
      uint8_t trailer[8];
      if (header.type == kReplyTypeErrorOffset) {
        if (absl::Status s = stream_.ReadFull(trailer); !s.ok()) return s;
        if (absl::Status s = CheckErrorOffset(trailer, request); !s.ok()) return s;
      } else if (absl::Status s = stream_.Skip(chunk->trailer_length); !s.ok()) {
        return s;
      }
      if (server_error.ok()) server_error = ServerError(chunk->error, PrintableServerText(message));
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown chunk kind");
}

}  // namespace ublkgw::nbd
