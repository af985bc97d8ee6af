#include "nbd/handshake.h"

#include <bit>

#include "absl/strings/str_cat.h"
#include "nbd/bytes.h"
#include "nbd/protocol_error.h"
#include "nbd/wire.h"

namespace ublkgw::nbd {

namespace {

// No option reply we ask for is larger: a LIST entry holds a name and a
// description of at most 4096 bytes each.
constexpr uint32_t kMaxOptionReplyLength = 3 * kMaxStringLength;

struct Greeting {
  bool fixed_newstyle = false;
  bool no_zeroes = false;
};

struct OptionReply {
  uint32_t type = 0;
  std::string data;
};

absl::Status BadHandshake(absl::string_view detail) {
  return ProtocolViolation(ProtocolError::kBadHandshake, detail);
}

const char* OptionName(uint32_t option) {
  switch (option) {
    case kOptExportName: return "NBD_OPT_EXPORT_NAME";
    case kOptAbort: return "NBD_OPT_ABORT";
    case kOptList: return "NBD_OPT_LIST";
    case kOptGo: return "NBD_OPT_GO";
    case kOptStructuredReply: return "NBD_OPT_STRUCTURED_REPLY";
    case kOptExtendedHeaders: return "NBD_OPT_EXTENDED_HEADERS";
    default: return "option";
  }
}

absl::StatusOr<Greeting> Greet(Stream& stream) {
  uint8_t greeting[kGreetingSize];
  if (absl::Status s = stream.ReadFull(greeting); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("reading the NBD greeting: ", s.message()));
  }
  if (LoadBe<uint64_t>(greeting) != kInitMagic) {
    return BadHandshake("the server's first bytes are not NBDMAGIC: is this an NBD server?");
  }
  const uint64_t second = LoadBe<uint64_t>(greeting + 8);
  if (second == kOldstyleMagic) {
    return absl::FailedPreconditionError(
        "the server speaks the oldstyle NBD handshake, which has no export names or options: "
        "configure it for newstyle (nbd-server and qemu-nbd do by default)");
  }
  if (second != kOptsMagic) {
    return BadHandshake(absl::StrCat("unknown handshake magic 0x", absl::Hex(second)));
  }
  const uint16_t flags = LoadBe<uint16_t>(greeting + 16);
  Greeting g{(flags & kFlagFixedNewstyle) != 0, (flags & kFlagNoZeroes) != 0};
  const uint32_t client_flags =
      (g.fixed_newstyle ? kFlagCFixedNewstyle : 0) | (g.no_zeroes ? kFlagCNoZeroes : 0);
  uint8_t reply[4];
  StoreBe(reply, client_flags);
  if (absl::Status s = stream.WriteFull(reply); !s.ok()) return s;
  return g;
}

absl::Status SendOption(Stream& stream, uint32_t option, const std::string& data) {
  std::string msg = ByteWriter()
                        .Put(kOptsMagic)
                        .Put(option)
                        .Put(static_cast<uint32_t>(data.size()))
                        .PutBytes(data)
                        .Take();
  return stream.WriteFull(AsBytes(msg));
}

absl::StatusOr<OptionReply> ReadOptionReply(Stream& stream, uint32_t option) {
  uint8_t header[kOptionReplyHeaderSize];
  if (absl::Status s = stream.ReadFull(header); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("waiting for the reply to ", OptionName(option), ": ",
                                               s.message()));
  }
  if (LoadBe<uint64_t>(header) != kOptReplyMagic) {
    return BadHandshake(absl::StrCat("reply to ", OptionName(option), " has the wrong magic"));
  }
  if (LoadBe<uint32_t>(header + 8) != option) {
    return BadHandshake(absl::StrCat("reply names option ", LoadBe<uint32_t>(header + 8), ", not ",
                                     OptionName(option)));
  }
  OptionReply reply;
  reply.type = LoadBe<uint32_t>(header + 12);
  const uint32_t length = LoadBe<uint32_t>(header + 16);
  if (length > kMaxOptionReplyLength) {
    return ProtocolViolation(ProtocolError::kOversizedLength,
                             absl::StrCat("reply to ", OptionName(option), " of ", length, " bytes"));
  }
  reply.data.resize(length);
  if (absl::Status s = stream.ReadFull({reinterpret_cast<uint8_t*>(reply.data.data()), length});
      !s.ok()) {
    return s;
  }
  return reply;
}

// The status for an error reply to `option`, in the user's terms.
absl::Status OptionError(uint32_t option, const OptionReply& reply, absl::string_view export_name) {
  const std::string said =
      reply.data.empty() ? "" : absl::StrCat(" (server says: ", PrintableServerText(reply.data), ")");
  const std::string exp = absl::StrCat("'", PrintableServerText(export_name), "'");
  switch (reply.type) {
    case kRepErrUnsup:
      return absl::UnimplementedError(absl::StrCat("the server does not support ", OptionName(option), said));
    case kRepErrPolicy:
      return absl::PermissionDeniedError(absl::StrCat("the server refuses ", OptionName(option),
                                                      " for export ", exp, " by policy", said));
    case kRepErrInvalid:
      return absl::InvalidArgumentError(absl::StrCat("the server calls ", OptionName(option),
                                                     " for export ", exp, " invalid", said));
    case kRepErrPlatform:
      return absl::UnimplementedError(absl::StrCat("the server's platform cannot do ",
                                                   OptionName(option), said));
    case kRepErrTlsReqd:
      return absl::FailedPreconditionError(absl::StrCat(
          "the server requires TLS for export ", exp, said,
          ": TLS (nbds://) is not supported yet; ask for a plaintext export"));
    case kRepErrUnknown:
      return absl::NotFoundError(absl::StrCat("the server has no export named ", exp, said,
                                              ": list its exports with 'ublkgw info --list URI'"));
    case kRepErrShutdown:
      return absl::UnavailableError(absl::StrCat("the server is shutting down", said));
    case kRepErrBlockSizeReqd:
      return absl::FailedPreconditionError(
          absl::StrCat("the server requires block size negotiation", said));
    case kRepErrTooBig:
      return absl::InvalidArgumentError(absl::StrCat("the server says the request is too big", said));
    case kRepErrExtHeaderReqd:
      return absl::FailedPreconditionError(
          absl::StrCat("the server requires extended headers", said));
    default:
      if (reply.type & kRepFlagError) {
        return absl::UnknownError(absl::StrCat("the server refused ", OptionName(option),
                                               " with error 0x", absl::Hex(reply.type), said));
      }
      return BadHandshake(absl::StrCat("unexpected reply type ", reply.type, " to ", OptionName(option)));
  }
}

// Sends a no-data option that the server answers with ACK or an error.
// Returns whether the server agreed.
absl::StatusOr<bool> SimpleOption(Stream& stream, uint32_t option) {
  if (absl::Status s = SendOption(stream, option, ""); !s.ok()) return s;
  auto reply = ReadOptionReply(stream, option);
  if (!reply.ok()) return reply.status();
  if (reply->type == kRepAck) {
    if (!reply->data.empty()) return BadHandshake(absl::StrCat("ACK with data to ", OptionName(option)));
    return true;
  }
  if (reply->type & kRepFlagError) return false;  // unsupported or refused: go on without
  return BadHandshake(absl::StrCat("unexpected reply type ", reply->type, " to ", OptionName(option)));
}

absl::Status ParseInfo(const std::string& data, ExportInfo& info, bool& got_export) {
  ByteReader r(AsBytes(data));
  auto type = r.Get<uint16_t>();
  if (!type) return BadHandshake("NBD_REP_INFO without a type");
  switch (*type) {
    case kInfoExport: {
      auto size = r.Get<uint64_t>();
      auto flags = r.Get<uint16_t>();
      if (!size || !flags || r.remaining() != 0) {
        return BadHandshake(absl::StrCat("NBD_INFO_EXPORT of ", data.size(), " bytes; expected 12"));
      }
      info.size = *size;
      info.flags = *flags;
      got_export = true;
      return absl::OkStatus();
    }
    case kInfoName:
      info.canonical_name = PrintableServerText(data.substr(2));
      return absl::OkStatus();
    case kInfoDescription:
      info.description = PrintableServerText(data.substr(2));
      return absl::OkStatus();
    case kInfoBlockSize: {
      auto min = r.Get<uint32_t>();
      auto preferred = r.Get<uint32_t>();
      auto max = r.Get<uint32_t>();
      if (!min || !preferred || !max || r.remaining() != 0) {
        return BadHandshake(absl::StrCat("NBD_INFO_BLOCK_SIZE of ", data.size(), " bytes; expected 14"));
      }
      // The spec: minimum a power of two up to 64 KiB; preferred a power of
      // two not below it; maximum a multiple of the minimum (or 2^32-1).
      if (!std::has_single_bit(*min) || *min > 65536 || !std::has_single_bit(*preferred) ||
          *preferred < *min || *max < *min || (*max != UINT32_MAX && *max % *min != 0)) {
        return BadHandshake(absl::StrCat("impossible block sizes: minimum ", *min, ", preferred ",
                                         *preferred, ", maximum ", *max));
      }
      info.block_sizes_from_server = true;
      info.min_block = *min;
      info.preferred_block = *preferred;
      info.max_payload = *max;
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();  // the spec: ignore info types we did not ask for
  }
}

// NBD_OPT_GO. Returns false if the server does not know the option
// (NBD_REP_ERR_UNSUP), the one case that allows NBD_OPT_EXPORT_NAME.
absl::StatusOr<bool> OptGo(Stream& stream, ExportInfo& info) {
  const std::string data = ByteWriter()
                               .Put(static_cast<uint32_t>(info.export_name.size()))
                               .PutBytes(info.export_name)
                               .Put(uint16_t{4})
                               .Put(kInfoExport)
                               .Put(kInfoName)
                               .Put(kInfoDescription)
                               .Put(kInfoBlockSize)
                               .Take();
  if (absl::Status s = SendOption(stream, kOptGo, data); !s.ok()) return s;
  bool got_export = false;
  for (;;) {
    auto reply = ReadOptionReply(stream, kOptGo);
    if (!reply.ok()) return reply.status();
    if (reply->type == kRepInfo) {
      if (absl::Status s = ParseInfo(reply->data, info, got_export); !s.ok()) return s;
      continue;
    }
    if (reply->type == kRepAck) {
      if (!got_export) return BadHandshake("NBD_OPT_GO acknowledged without NBD_INFO_EXPORT");
      return true;
    }
    if (reply->type == kRepErrUnsup) return false;
    return OptionError(kOptGo, *reply, info.export_name);
  }
}

// The old way: NBD_OPT_EXPORT_NAME, answered with size and flags, or by
// the server closing the connection.
absl::Status ExportNameFallback(Stream& stream, ExportInfo& info) {
  if (absl::Status s = SendOption(stream, kOptExportName, info.export_name); !s.ok()) return s;
  uint8_t reply[kExportNameReplySize];
  if (absl::Status s = stream.ReadFull(reply); !s.ok()) {
    if (absl::IsUnavailable(s)) {
      return absl::NotFoundError(absl::StrCat(
          "the server closed the connection after NBD_OPT_EXPORT_NAME: it has no export named '",
          PrintableServerText(info.export_name), "' (or refused it)"));
    }
    return s;
  }
  info.size = LoadBe<uint64_t>(reply);
  info.flags = LoadBe<uint16_t>(reply + 8);
  info.used_opt_go = false;
  if (!info.no_zeroes) return stream.Skip(kExportNameReplyZeroes);
  return absl::OkStatus();
}

}  // namespace

bool ExportInfo::read_only() const { return (flags & kFlagReadOnly) != 0; }

absl::StatusOr<ExportInfo> Negotiate(Stream& stream, const HandshakeOptions& options) {
  if (options.export_name.size() > kMaxStringLength) {
    return absl::InvalidArgumentError("export name longer than 4096 bytes");
  }
  auto greeting = Greet(stream);
  if (!greeting.ok()) return greeting.status();
  ExportInfo info;
  info.export_name = options.export_name;
  info.no_zeroes = greeting->no_zeroes;
  if (!greeting->fixed_newstyle) {
    // Plain newstyle servers understand nothing but NBD_OPT_EXPORT_NAME.
    if (absl::Status s = ExportNameFallback(stream, info); !s.ok()) return s;
    return info;
  }

  if (options.extended_headers) {
    auto ok = SimpleOption(stream, kOptExtendedHeaders);
    if (!ok.ok()) return ok.status();
    if (*ok) info.mode = HeaderMode::kExtended;
  }
  if (info.mode == HeaderMode::kSimple && options.structured_replies) {
    auto ok = SimpleOption(stream, kOptStructuredReply);
    if (!ok.ok()) return ok.status();
    if (*ok) info.mode = HeaderMode::kStructured;
  }

  auto go = OptGo(stream, info);
  if (!go.ok()) return go.status();
  if (!*go) {
    // A server from before NBD_OPT_GO: the spec's fallback, which extended
    // headers rule out.
    if (info.mode == HeaderMode::kExtended) {
      return BadHandshake("NBD_OPT_GO unsupported although extended headers were agreed");
    }
    if (absl::Status s = ExportNameFallback(stream, info); !s.ok()) return s;
  }
  return info;
}

absl::StatusOr<std::vector<ExportListEntry>> ListExports(Stream& stream) {
  auto greeting = Greet(stream);
  if (!greeting.ok()) return greeting.status();
  if (!greeting->fixed_newstyle) {
    return absl::UnimplementedError("the server is not fixed-newstyle: it cannot list its exports");
  }
  if (absl::Status s = SendOption(stream, kOptList, ""); !s.ok()) return s;
  std::vector<ExportListEntry> exports;
  for (;;) {
    auto reply = ReadOptionReply(stream, kOptList);
    if (!reply.ok()) return reply.status();
    if (reply->type == kRepAck) break;
    if (reply->type != kRepServer) return OptionError(kOptList, *reply, "");
    ByteReader r(AsBytes(reply->data));
    auto name_length = r.Get<uint32_t>();
    if (!name_length || *name_length > r.remaining()) {
      return BadHandshake("NBD_REP_SERVER whose name length exceeds the reply");
    }
    ExportListEntry entry;
    entry.name = PrintableServerText(*r.GetString(*name_length));
    entry.description = PrintableServerText(*r.GetString(r.remaining()));
    exports.push_back(std::move(entry));
  }
  // End politely; the server may close without answering (older servers).
  if (SendOption(stream, kOptAbort, "").ok()) (void)ReadOptionReply(stream, kOptAbort);
  return exports;
}

std::vector<std::string> TransmissionFlagNames(uint16_t flags) {
  static constexpr const char* kNames[] = {
      "HAS_FLAGS", "READ_ONLY", "SEND_FLUSH", "SEND_FUA", "ROTATIONAL", "SEND_TRIM",
      "SEND_WRITE_ZEROES", "SEND_DF", "CAN_MULTI_CONN", "SEND_RESIZE", "SEND_CACHE",
      "SEND_FAST_ZERO", "BLOCK_STATUS_PAYLOAD"};
  std::vector<std::string> names;
  for (int bit = 0; bit < 16; ++bit) {
    if (!(flags & (1u << bit))) continue;
    names.push_back(bit < static_cast<int>(std::size(kNames)) ? kNames[bit]
                                                              : absl::StrCat("BIT_", bit));
  }
  return names;
}

}  // namespace ublkgw::nbd
