// `ublkgw info URI`: what an NBD server offers, like nbdinfo. Needs no ublk
// and no daemon.
#ifndef UBLKGW_CLI_INFO_COMMAND_H_
#define UBLKGW_CLI_INFO_COMMAND_H_

#include <ostream>
#include <string>

#include "nbd/handshake.h"
#include "nbd/uri.h"
#include "nlohmann/json.hpp"

namespace ublkgw::cli {

struct InfoOptions {
  std::string uri;
  bool list = false;  // list the server's exports instead
  bool json = false;
  int timeout_seconds = 10;
};

std::string RenderExportInfo(const nbd::Uri& uri, const nbd::ExportInfo& info);
nlohmann::json ExportInfoJson(const nbd::Uri& uri, const nbd::ExportInfo& info);

// Runs the command; returns the exit code.
int RunInfo(const InfoOptions& options, std::ostream& out, std::ostream& err);

}  // namespace ublkgw::cli

#endif  // UBLKGW_CLI_INFO_COMMAND_H_
