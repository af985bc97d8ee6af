// The daemon's record of what is attached: `state.json` in the state
// directory (default /var/lib/ublkgw), replaced atomically on every change
// so a crash at any instant leaves either the previous record or the new
// one, never a mixture and never nothing.
#ifndef UBLKGW_CONTROL_STATE_STORE_H_
#define UBLKGW_CONTROL_STATE_STORE_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "ublkgw/v1/state.pb.h"

namespace ublkgw::control {

// The steps of an atomic replacement, after each of which a test may
// pretend the process died.
enum class WriteStep {
  kTempCreated,   // dir/NAME.tmp exists, empty
  kHalfWritten,   // half the contents are in it (a torn write)
  kWritten,       // all of it, not yet synced
  kSynced,        // fsynced
  kRenamed,       // renamed over dir/NAME, directory not yet synced
};
// Returns true to stop at `step` as if the process had died there.
using CrashHook = std::function<bool(WriteStep)>;

// Replaces `dir`/`name` with `contents`: write `name`.tmp, fsync it,
// rename it over `name`, fsync `dir`. Readers see the old file or the new
// one. A test's `crash` hook may stop it part way (then it returns
// ABORTED).
absl::Status WriteFileAtomically(const std::string& dir, const std::string& name,
                                 std::string_view contents, const CrashHook& crash = nullptr);

// Not thread-safe: the owner serialises calls.
class StateStore {
 public:
  static constexpr char kFileName[] = "state.json";

  // `dir` is created (mode 0700) if missing by the first Save.
  explicit StateStore(std::string dir) : dir_(std::move(dir)) {}

  // The recorded attachments; none if nothing was ever recorded. A file
  // that cannot be parsed is moved aside to state.json.corrupt (kept for
  // the operator) and DATA_LOSS names it; one from a newer daemon (a
  // higher format) is FAILED_PRECONDITION and left alone; a stray
  // state.json.tmp from a crash is ignored.
  absl::StatusOr<std::vector<v1::AttachmentRecord>> Load();
  absl::Status Save(const std::vector<v1::AttachmentRecord>& records,
                    const CrashHook& crash = nullptr);

  const std::string& dir() const { return dir_; }
  std::string path() const { return dir_ + "/" + kFileName; }

 private:
  std::string dir_;
};

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_STATE_STORE_H_
