#include "engine/export_connection.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "engine/request_mapping.h"
#include "glog/logging.h"
#include "nbd/stream.h"
#include "nbd/wire.h"

namespace ublkgw::engine {

namespace {

// Every connection of a device must see the same export.
absl::Status SameExport(const nbd::ExportInfo& a, const nbd::ExportInfo& b) {
  if (a.size != b.size || a.flags != b.flags || a.mode != b.mode) {
    return absl::FailedPreconditionError(
        "the server described the export differently on a second connection");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::pair<UniqueFd, nbd::ExportInfo>> ConnectAndNegotiate(const nbd::Uri& uri,
                                                                         absl::Duration timeout,
                                                                         int cancel_fd) {
  auto fd = nbd::Connect(uri, timeout, cancel_fd);
  if (!fd.ok()) return fd.status();
  nbd::Stream stream(*std::move(fd), timeout, cancel_fd);
  nbd::HandshakeOptions options;
  options.export_name = uri.export_name;
  auto info = nbd::Negotiate(stream, options);
  if (!info.ok()) return info.status();
  return std::pair{stream.Release(), *std::move(info)};
}

absl::StatusOr<ConnectedExport> ConnectExport(const AttachOptions& options, int cancel_fd) {
  auto uri = nbd::ParseUri(options.uri);
  if (!uri.ok()) return uri.status();
  if (options.queues < 1 || options.queues > kMaxQueues) {
    return absl::InvalidArgumentError(
        absl::StrCat("queues must be 1 to ", kMaxQueues, ", not ", options.queues));
  }
  if (options.depth < 1 || options.depth > kMaxDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("depth must be 1 to ", kMaxDepth, ", not ", options.depth));
  }

  // The first connection tells what the export is.
  auto first = ConnectAndNegotiate(*uri, options.connect_timeout, cancel_fd);
  if (!first.ok()) return first.status();
  ConnectedExport c;
  c.uri = uri->ToString();
  c.info = first->second;
  c.sockets.push_back(std::move(first->first));
  uint16_t queues = options.queues;
  if (queues > 1 && !c.info.can(nbd::kFlagCanMultiConn)) {
    c.note = absl::StrCat("the server does not set CAN_MULTI_CONN: using 1 queue, not ", queues);
    LOG(WARNING) << c.uri << ": " << c.note;
    queues = 1;
  }
  c.max_io = IoBufferBytes(c.info, static_cast<uint32_t>(sysconf(_SC_PAGESIZE)), kMaxIoBytes);
  auto params = ParamsForExport(c.info, c.max_io, options.read_only);
  if (!params.ok()) return params.status();
  c.params = *params;
  for (uint16_t q = 1; q < queues; ++q) {
    auto more = ConnectAndNegotiate(*uri, options.connect_timeout, cancel_fd);
    if (!more.ok()) return more.status();
    if (absl::Status s = SameExport(c.info, more->second); !s.ok()) return s;
    c.sockets.push_back(std::move(more->first));
  }
  return c;
}

}  // namespace ublkgw::engine
