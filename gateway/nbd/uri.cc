#include "nbd/uri.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ublkgw::nbd {

namespace {

absl::Status Invalid(absl::string_view text, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("invalid NBD URI '", text, "': ", what));
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = absl::ascii_tolower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Decodes %XX escapes. Fails on a truncated or non-hex escape.
absl::StatusOr<std::string> PercentDecode(absl::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) {
      return absl::InvalidArgumentError("truncated %-escape");
    }
    const int hi = HexValue(in[i + 1]);
    const int lo = HexValue(in[i + 2]);
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("bad %-escape");
    out.push_back(static_cast<char>(hi << 4 | lo));
    i += 2;
  }
  return out;
}

bool NeedsEscape(char c) {
  return !(absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/' ||
           c == ':' || c == '@' || c == '+' || c == ',' || c == '=');
}

std::string PercentEncode(absl::string_view in) {
  std::string out;
  for (char c : in) {
    if (NeedsEscape(c)) {
      absl::StrAppend(&out, "%", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<Uri> ParseUri(absl::string_view text) {
  if (text.size() > kMaxUriLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("NBD URI is ", text.size(), " bytes long; the limit is ", kMaxUriLength));
  }
  Uri uri;
  const size_t scheme_end = text.find("://");
  if (scheme_end == absl::string_view::npos) {
    return Invalid(text, "expected SCHEME://..., e.g. nbd://host/export");
  }
  const std::string scheme = absl::AsciiStrToLower(text.substr(0, scheme_end));
  if (scheme == "nbd") {
  } else if (scheme == "nbds") {
    uri.tls = true;
  } else if (scheme == "nbd+unix") {
    uri.transport = Uri::Transport::kUnix;
  } else if (scheme == "nbds+unix") {
    uri.transport = Uri::Transport::kUnix;
    uri.tls = true;
  } else {
    return Invalid(text, absl::StrCat("unknown scheme '", scheme,
                                      "': use nbd://, nbds://, nbd+unix:// or nbds+unix://"));
  }

  absl::string_view rest = text.substr(scheme_end + 3);
  if (const size_t hash = rest.find('#'); hash != absl::string_view::npos) {
    rest = rest.substr(0, hash);
  }
  absl::string_view query;
  if (const size_t q = rest.find('?'); q != absl::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  absl::string_view authority = rest;
  absl::string_view path;
  if (const size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    authority = rest.substr(0, slash);
    path = rest.substr(slash + 1);  // the export name follows the first '/'
  }
  if (absl::StrContains(authority, '@')) {
    return Invalid(text, "user names (user@host, TLS user names) are not supported yet");
  }

  auto export_name = PercentDecode(path);
  if (!export_name.ok()) return Invalid(text, export_name.status().message());
  if (export_name->size() > kMaxExportNameLength) {
    return Invalid(text, absl::StrCat("the export name is longer than ", kMaxExportNameLength,
                                      " bytes"));
  }
  uri.export_name = *std::move(export_name);

  for (absl::string_view param : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(param, absl::MaxSplits('=', 1));
    auto value = PercentDecode(kv.second);
    if (!value.ok()) return Invalid(text, value.status().message());
    if (kv.first == "socket") {
      if (uri.transport != Uri::Transport::kUnix) {
        return Invalid(text, "socket= belongs to nbd+unix:// URIs");
      }
      uri.socket_path = *value;
    } else if (absl::StartsWith(kv.first, "tls-")) {
      if (!uri.tls) return Invalid(text, absl::StrCat(kv.first, "= needs a TLS scheme (nbds://)"));
      // TLS parameters are accepted here; TLS itself is refused at connect.
    } else {
      return Invalid(text, absl::StrCat("unknown query parameter '", kv.first,
                                        "' (known: socket, tls-*)"));
    }
  }

  if (uri.transport == Uri::Transport::kUnix) {
    if (!authority.empty()) {
      return Invalid(text, "nbd+unix:// takes no host: write nbd+unix:///EXPORT?socket=PATH");
    }
    if (uri.socket_path.empty()) {
      return Invalid(text, "nbd+unix:// needs ?socket=PATH");
    }
    return uri;
  }

  // TCP: HOST[:PORT] with HOST possibly a bracketed IPv6 literal.
  absl::string_view host = authority;
  absl::string_view port;
  if (absl::StartsWith(authority, "[")) {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) return Invalid(text, "unclosed '[' in an IPv6 address");
    host = authority.substr(1, close - 1);
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return Invalid(text, "expected ':PORT' after ']'");
      port = after.substr(1);
    }
    if (host.empty() || !absl::StrContains(host, ':')) {
      return Invalid(text, "brackets hold an IPv6 address, e.g. [::1]");
    }
  } else {
    if (const size_t colon = authority.find(':'); colon != absl::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      if (absl::StrContains(port, ':')) {
        return Invalid(text, "an IPv6 address must be in brackets, e.g. nbd://[::1]/export");
      }
    }
  }
  if (host.empty()) return Invalid(text, "no host: write nbd://HOST[:PORT]/EXPORT");
  uri.host = std::string(host);
  if (!port.empty()) {
    uint32_t value = 0;
    if (!absl::SimpleAtoi(port, &value) || value == 0 || value > 65535) {
      return Invalid(text, absl::StrCat("port '", port, "' is not a number from 1 to 65535"));
    }
    uri.port = static_cast<uint16_t>(value);
  }
  return uri;
}

std::string Uri::ToString() const {
  const char* scheme = transport == Transport::kUnix ? (tls ? "nbds+unix" : "nbd+unix")
                                                     : (tls ? "nbds" : "nbd");
  if (transport == Transport::kUnix) {
    return absl::StrCat(scheme, ":///", PercentEncode(export_name),
                        "?socket=", PercentEncode(socket_path));
  }
  const bool v6 = absl::StrContains(host, ':');
  return absl::StrCat(scheme, "://", v6 ? "[" : "", host, v6 ? "]" : "", ":", port, "/",
                      PercentEncode(export_name));
}

}  // namespace ublkgw::nbd
