#include "cli/info_command.h"

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/exit_codes.h"
#include "cli/output.h"
#include "nbd/blocking_client.h"
#include "nbd/stream.h"
#include "nbd/wire.h"

namespace ublkgw::cli {

namespace {

const char* ModeName(nbd::HeaderMode mode) {
  switch (mode) {
    case nbd::HeaderMode::kSimple: return "simple replies";
    case nbd::HeaderMode::kStructured: return "structured replies";
    case nbd::HeaderMode::kExtended: return "extended headers";
  }
  return "?";
}

int ListExports(const nbd::Uri& uri, const InfoOptions& options, std::ostream& out,
                std::ostream& err) {
  const absl::Duration timeout = absl::Seconds(options.timeout_seconds);
  auto fd = nbd::Connect(uri, timeout);
  if (!fd.ok()) return ReportError(fd.status(), options.json, out, err);
  nbd::Stream stream(*std::move(fd), timeout);
  auto exports = nbd::ListExports(stream);
  if (!exports.ok()) return ReportError(exports.status(), options.json, out, err);
  if (options.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& e : *exports) list.push_back({{"name", e.name}, {"description", e.description}});
    out << nlohmann::json{{"exports", list}}.dump(2) << "\n";
    return kExitOk;
  }
  out << absl::StrFormat("%-30s  %s\n", "EXPORT", "DESCRIPTION");
  for (const auto& e : *exports) {
    out << absl::StrFormat("%-30s  %s\n", e.name.empty() ? "(default)" : e.name, e.description);
  }
  return kExitOk;
}

}  // namespace

std::string RenderExportInfo(const nbd::Uri& uri, const nbd::ExportInfo& info) {
  std::string out;
  absl::StrAppendFormat(&out, "%-19s %s\n", "uri:", uri.ToString());
  absl::StrAppendFormat(&out, "%-19s \"%s\"%s\n", "export:", info.export_name,
                        info.canonical_name.empty() || info.canonical_name == info.export_name
                            ? ""
                            : absl::StrFormat(" (canonical \"%s\")", info.canonical_name));
  if (!info.description.empty()) absl::StrAppendFormat(&out, "%-19s %s\n", "description:", info.description);
  absl::StrAppendFormat(&out, "%-19s %d bytes (%s)\n", "size:", info.size, HumanSize(info.size));
  absl::StrAppendFormat(&out, "%-19s %s\n", "read-only:", info.read_only() ? "yes" : "no");
  absl::StrAppendFormat(&out, "%-19s %s\n", "multi-conn:",
                        info.can(nbd::kFlagCanMultiConn) ? "yes" : "no");
  absl::StrAppendFormat(&out, "%-19s 0x%04x %s\n", "transmission flags:", info.flags,
                        absl::StrJoin(nbd::TransmissionFlagNames(info.flags), " "));
  absl::StrAppendFormat(&out, "%-19s minimum %d, preferred %d, maximum payload %d (%s)\n",
                        "block sizes:", info.min_block, info.preferred_block, info.max_payload,
                        info.block_sizes_from_server ? "from the server" : "defaults");
  absl::StrAppendFormat(&out, "%-19s %s via %s\n", "negotiated:", ModeName(info.mode),
                        info.used_opt_go ? "NBD_OPT_GO" : "NBD_OPT_EXPORT_NAME");
  return out;
}

nlohmann::json ExportInfoJson(const nbd::Uri& uri, const nbd::ExportInfo& info) {
  return {
      {"uri", uri.ToString()},
      {"export_name", info.export_name},
      {"canonical_name", info.canonical_name},
      {"description", info.description},
      {"size", info.size},
      {"read_only", info.read_only()},
      {"multi_conn", info.can(nbd::kFlagCanMultiConn)},
      {"transmission_flags", info.flags},
      {"transmission_flag_names", nbd::TransmissionFlagNames(info.flags)},
      {"block_size",
       {{"minimum", info.min_block},
        {"preferred", info.preferred_block},
        {"maximum_payload", info.max_payload},
        {"from_server", info.block_sizes_from_server}}},
      {"structured_replies", info.mode != nbd::HeaderMode::kSimple},
      {"extended_headers", info.mode == nbd::HeaderMode::kExtended},
      {"opt_go", info.used_opt_go},
  };
}

int RunInfo(const InfoOptions& options, std::ostream& out, std::ostream& err) {
  auto uri = nbd::ParseUri(options.uri);
  if (!uri.ok()) return ReportError(uri.status(), options.json, out, err);
  if (options.list) return ListExports(*uri, options, out, err);

  nbd::ClientOptions client_options;
  client_options.timeout = absl::Seconds(options.timeout_seconds);
  auto client = nbd::BlockingClient::Connect(*uri, client_options);
  if (!client.ok()) return ReportError(client.status(), options.json, out, err);
  const nbd::ExportInfo info = client->info();
  (void)client->Disconnect();  // best effort: the answer is already in hand
  if (options.json) {
    out << ExportInfoJson(*uri, info).dump(2) << "\n";
  } else {
    out << RenderExportInfo(*uri, info);
  }
  return kExitOk;
}

}  // namespace ublkgw::cli
