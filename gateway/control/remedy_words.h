// The engine's remedies (engine/remedy.h) in the daemon's words: which
// ublkgwd flag or attach option to change. The one place that maps them.
#ifndef UBLKGW_CONTROL_REMEDY_WORDS_H_
#define UBLKGW_CONTROL_REMEDY_WORDS_H_

#include <string>

#include "absl/status/status.h"
#include "engine/remedy.h"

namespace ublkgw::control {

// What to do, as a sentence fragment ("" for kNone).
std::string RemedyWords(engine::Remedy remedy);
// `status` with its remedy's words appended to its message (as it is when
// it carries none).
absl::Status Explain(const absl::Status& status);
// `text` (a note or a data path's detail) with the remedy's words after it.
std::string Explain(const std::string& text, engine::Remedy remedy);

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_REMEDY_WORDS_H_
