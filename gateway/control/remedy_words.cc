#include "control/remedy_words.h"

#include "absl/strings/str_cat.h"

namespace ublkgw::control {

std::string RemedyWords(engine::Remedy remedy) {
  switch (remedy) {
    case engine::Remedy::kNone:
      return "";
    case engine::Remedy::kUseCopyDataPath:
      return "attach with --data-path auto (or copy) to use the copy data path";
    case engine::Remedy::kEnableSendZc:
      return "ublkgwd --send-zc-min-bytes enables it";
    case engine::Remedy::kAllowSocketOps:
      return "start ublkgwd without --disable-socket-ops, or detach the volume";
    case engine::Remedy::kAllowUserRecovery:
      return "ublkgwd --disable-ublk-features user-recovery rules it out";
    case engine::Remedy::kUseZeroCopyDataPath:
      return "attach with --data-path auto (or zero-copy) to use the best path this kernel has";
  }
  return "";
}

absl::Status Explain(const absl::Status& status) {
  const std::string words = RemedyWords(engine::RemedyOf(status));
  if (status.ok() || words.empty()) return status;
  return absl::Status(status.code(), absl::StrCat(status.message(), "; ", words));
}

std::string Explain(const std::string& text, engine::Remedy remedy) {
  const std::string words = RemedyWords(remedy);
  if (words.empty()) return text;
  return absl::StrCat(text, " (", words, ")");
}

}  // namespace ublkgw::control
