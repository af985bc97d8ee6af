// The NBD protocol on the wire: every magic, flag, option, reply type,
// command and error number, and the sizes of the fixed-size messages. All
// multi-byte fields are big-endian (network byte order); read and write them
// with nbd/bytes.h, never by casting a buffer to a struct.
//
// Names follow the protocol specification (NetworkBlockDevice/nbd,
// doc/proto.md) without the NBD_ prefix, inside namespace nbd.
#ifndef UBLKGW_NBD_WIRE_H_
#define UBLKGW_NBD_WIRE_H_

#include <cstddef>
#include <cstdint>

namespace ublkgw::nbd {

// --- Magic numbers -----------------------------------------------------------
inline constexpr uint64_t kInitMagic = 0x4e42444d41474943;   // "NBDMAGIC"
inline constexpr uint64_t kOptsMagic = 0x49484156454f5054;   // "IHAVEOPT"
inline constexpr uint64_t kOldstyleMagic = 0x00420281861253;
inline constexpr uint64_t kOptReplyMagic = 0x0003e889045565a9;
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kExtendedRequestMagic = 0x21e41c71;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;
inline constexpr uint32_t kExtendedReplyMagic = 0x6e8a278c;

// --- Handshake flags ---------------------------------------------------------
// Server, in the greeting (16 bits).
inline constexpr uint16_t kFlagFixedNewstyle = 1 << 0;
inline constexpr uint16_t kFlagNoZeroes = 1 << 1;
// Client, in its reply to the greeting (32 bits).
inline constexpr uint32_t kFlagCFixedNewstyle = 1 << 0;
inline constexpr uint32_t kFlagCNoZeroes = 1 << 1;

// --- Transmission flags (16 bits, per export) --------------------------------
inline constexpr uint16_t kFlagHasFlags = 1 << 0;
inline constexpr uint16_t kFlagReadOnly = 1 << 1;
inline constexpr uint16_t kFlagSendFlush = 1 << 2;
inline constexpr uint16_t kFlagSendFua = 1 << 3;
inline constexpr uint16_t kFlagRotational = 1 << 4;
inline constexpr uint16_t kFlagSendTrim = 1 << 5;
inline constexpr uint16_t kFlagSendWriteZeroes = 1 << 6;
inline constexpr uint16_t kFlagSendDf = 1 << 7;
inline constexpr uint16_t kFlagCanMultiConn = 1 << 8;
inline constexpr uint16_t kFlagSendResize = 1 << 9;
inline constexpr uint16_t kFlagSendCache = 1 << 10;
inline constexpr uint16_t kFlagSendFastZero = 1 << 11;
inline constexpr uint16_t kFlagBlockStatusPayload = 1 << 12;

// --- Options (client -> server during the handshake) ------------------------
inline constexpr uint32_t kOptExportName = 1;
inline constexpr uint32_t kOptAbort = 2;
inline constexpr uint32_t kOptList = 3;
inline constexpr uint32_t kOptPeekExport = 4;  // withdrawn
inline constexpr uint32_t kOptStartTls = 5;
inline constexpr uint32_t kOptInfo = 6;
inline constexpr uint32_t kOptGo = 7;
inline constexpr uint32_t kOptStructuredReply = 8;
inline constexpr uint32_t kOptListMetaContext = 9;
inline constexpr uint32_t kOptSetMetaContext = 10;
inline constexpr uint32_t kOptExtendedHeaders = 11;

// --- Option replies ----------------------------------------------------------
inline constexpr uint32_t kRepAck = 1;
inline constexpr uint32_t kRepServer = 2;
inline constexpr uint32_t kRepInfo = 3;
inline constexpr uint32_t kRepMetaContext = 4;
inline constexpr uint32_t kRepFlagError = 1U << 31;
inline constexpr uint32_t kRepErrUnsup = kRepFlagError | 1;
inline constexpr uint32_t kRepErrPolicy = kRepFlagError | 2;
inline constexpr uint32_t kRepErrInvalid = kRepFlagError | 3;
inline constexpr uint32_t kRepErrPlatform = kRepFlagError | 4;
inline constexpr uint32_t kRepErrTlsReqd = kRepFlagError | 5;
inline constexpr uint32_t kRepErrUnknown = kRepFlagError | 6;
inline constexpr uint32_t kRepErrShutdown = kRepFlagError | 7;
inline constexpr uint32_t kRepErrBlockSizeReqd = kRepFlagError | 8;
inline constexpr uint32_t kRepErrTooBig = kRepFlagError | 9;
inline constexpr uint32_t kRepErrExtHeaderReqd = kRepFlagError | 10;

// --- Info types (NBD_REP_INFO payloads) --------------------------------------
inline constexpr uint16_t kInfoExport = 0;       // u64 size, u16 transmission flags
inline constexpr uint16_t kInfoName = 1;         // name
inline constexpr uint16_t kInfoDescription = 2;  // description
inline constexpr uint16_t kInfoBlockSize = 3;    // u32 minimum, preferred, maximum

// --- Commands and command flags ----------------------------------------------
inline constexpr uint16_t kCmdRead = 0;
inline constexpr uint16_t kCmdWrite = 1;
inline constexpr uint16_t kCmdDisc = 2;
inline constexpr uint16_t kCmdFlush = 3;
inline constexpr uint16_t kCmdTrim = 4;
inline constexpr uint16_t kCmdCache = 5;
inline constexpr uint16_t kCmdWriteZeroes = 6;
inline constexpr uint16_t kCmdBlockStatus = 7;
inline constexpr uint16_t kCmdResize = 8;

// "READ", "WRITE", ... for logs.
constexpr const char* CommandName(uint16_t type) {
  constexpr const char* kNames[] = {"READ",  "WRITE",        "DISC",         "FLUSH", "TRIM",
                                    "CACHE", "WRITE_ZEROES", "BLOCK_STATUS", "RESIZE"};
  return type < sizeof(kNames) / sizeof(kNames[0]) ? kNames[type] : "command";
}

inline constexpr uint16_t kCmdFlagFua = 1 << 0;
inline constexpr uint16_t kCmdFlagNoHole = 1 << 1;
inline constexpr uint16_t kCmdFlagDf = 1 << 2;
inline constexpr uint16_t kCmdFlagReqOne = 1 << 3;
inline constexpr uint16_t kCmdFlagFastZero = 1 << 4;
inline constexpr uint16_t kCmdFlagPayloadLen = 1 << 5;

// --- Structured replies ------------------------------------------------------
inline constexpr uint16_t kReplyFlagDone = 1 << 0;

inline constexpr uint16_t kReplyTypeNone = 0;
inline constexpr uint16_t kReplyTypeOffsetData = 1;
inline constexpr uint16_t kReplyTypeOffsetHole = 2;
inline constexpr uint16_t kReplyTypeBlockStatus = 5;
inline constexpr uint16_t kReplyTypeBlockStatusExt = 6;
inline constexpr uint16_t kReplyTypeErrorBit = 1 << 15;
inline constexpr uint16_t kReplyTypeError = kReplyTypeErrorBit | 1;
inline constexpr uint16_t kReplyTypeErrorOffset = kReplyTypeErrorBit | 2;
// An OFFSET_DATA chunk's payload starts with its u64 offset.
inline constexpr size_t kDataChunkPrefixSize = 8;

// --- Errors (reply error field, error chunks) --------------------------------
inline constexpr uint32_t kEPerm = 1;
inline constexpr uint32_t kEIo = 5;
inline constexpr uint32_t kENoMem = 12;
inline constexpr uint32_t kEInval = 22;
inline constexpr uint32_t kENoSpc = 28;
inline constexpr uint32_t kEOverflow = 75;
inline constexpr uint32_t kENotSup = 95;
inline constexpr uint32_t kEShutdown = 108;

// --- Fixed message sizes -----------------------------------------------------
// Server greeting: NBDMAGIC, IHAVEOPT, u16 handshake flags.
inline constexpr size_t kGreetingSize = 18;
// Client option request header: IHAVEOPT, u32 option, u32 length.
inline constexpr size_t kOptionHeaderSize = 16;
// Server option reply header: magic, u32 option, u32 type, u32 length.
inline constexpr size_t kOptionReplyHeaderSize = 20;
// After NBD_OPT_EXPORT_NAME: u64 size, u16 flags, and 124 zero bytes unless
// NO_ZEROES was agreed.
inline constexpr size_t kExportNameReplySize = 10;
inline constexpr size_t kExportNameReplyZeroes = 124;

inline constexpr size_t kRequestSize = 28;          // magic, flags, type, cookie, offset, u32 length
inline constexpr size_t kExtendedRequestSize = 32;  // ... u64 length
inline constexpr size_t kSimpleReplySize = 16;      // magic, error, cookie
inline constexpr size_t kStructuredReplySize = 20;  // magic, flags, type, cookie, u32 length
inline constexpr size_t kExtendedReplySize = 32;    // magic, flags, type, cookie, offset, u64 length

// --- Limits ------------------------------------------------------------------
inline constexpr uint32_t kMaxStringLength = 4096;  // names, descriptions, messages
// Block sizes when the server sends none: minimum 1 (512 recommended),
// preferred 4096, maximum payload 32 MiB.
inline constexpr uint32_t kDefaultMinBlockSize = 1;
inline constexpr uint32_t kDefaultPreferredBlockSize = 4096;
inline constexpr uint32_t kDefaultMaxPayload = 32 * 1024 * 1024;

}  // namespace ublkgw::nbd

#endif  // UBLKGW_NBD_WIRE_H_
