// A synchronous NBD client: one request at a time over a Stream. For
// `ublkgw info`, tests and tools; the data path is the engine's, not this.
// It sends only what ValidateRequest allows and checks every reply with
// the codec. After a protocol violation or a broken stream it refuses
// further requests (FAILED_PRECONDITION): the connection is not trusted.
#ifndef UBLKGW_NBD_BLOCKING_CLIENT_H_
#define UBLKGW_NBD_BLOCKING_CLIENT_H_

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nbd/handshake.h"
#include "nbd/stream.h"
#include "nbd/uri.h"

namespace ublkgw::nbd {

struct ClientOptions {
  HandshakeOptions handshake;       // export_name is taken from the URI
  absl::Duration timeout = absl::Seconds(30);  // connect, and each read or write
};

// Thread-compatible: one thread at a time.
class BlockingClient {
 public:
  static absl::StatusOr<BlockingClient> Connect(const Uri& uri, ClientOptions options = {});
  // Runs the handshake over an already connected stream (tests use this
  // with an in-process fake server).
  static absl::StatusOr<BlockingClient> Open(Stream stream, const HandshakeOptions& options);

  const ExportInfo& info() const { return info_; }

  // Server errors come back as statuses built from the NBD error number,
  // with the server's message when it sent one.
  absl::Status Read(uint64_t offset, std::span<uint8_t> out);
  absl::Status Write(uint64_t offset, std::span<const uint8_t> data, bool fua = false);
  absl::Status Flush();
  absl::Status Trim(uint64_t offset, uint64_t length, bool fua = false);
  absl::Status WriteZeroes(uint64_t offset, uint64_t length, uint16_t flags = 0);
  absl::Status Cache(uint64_t offset, uint64_t length);
  // Sends NBD_CMD_DISC; the server closes the connection.
  absl::Status Disconnect();

 private:
  BlockingClient(Stream stream, ExportInfo info) : stream_(std::move(stream)), info_(std::move(info)) {}

  absl::Status Execute(Request request, std::span<const uint8_t> write_data,
                       std::span<uint8_t> read_into);
  // Receives the reply to `request`. Returns the state of the connection (a
  // stream error or a protocol violation breaks it) and stores the server's
  // own verdict on the request (OK or its error) in `server_error`.
  absl::Status ReceiveReply(const Request& request, std::span<uint8_t> read_into,
                            absl::Status& server_error);
  absl::Status ReceiveChunk(const ReplyHeader& header, const Request& request,
                            std::span<uint8_t> read_into, ReadCoverage& coverage,
                            absl::Status& server_error);

  Stream stream_;
  ExportInfo info_;
  uint64_t next_cookie_ = 1;
  bool broken_ = false;
};

}  // namespace ublkgw::nbd

#endif  // UBLKGW_NBD_BLOCKING_CLIENT_H_
