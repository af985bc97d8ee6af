#include "control/state_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "google/protobuf/util/json_util.h"

namespace ublkgw::control {

namespace {

absl::Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("writing ", path));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status SyncDir(const std::string& dir) {
  UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("opening ", dir));
  if (fsync(fd.get()) != 0) return ErrnoToStatus(errno, absl::StrCat("fsync of ", dir));
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& dir, const std::string& name,
                                 std::string_view contents, const CrashHook& crash) {
  auto crashed = [&](WriteStep step) { return crash && crash(step); };
  const std::string final_path = dir + "/" + name;
  const std::string temp_path = final_path + ".tmp";
  UniqueFd fd(open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("creating ", temp_path));
  if (crashed(WriteStep::kTempCreated)) return absl::AbortedError("crash point");
  const size_t half = contents.size() / 2;
  if (absl::Status s = WriteAll(fd.get(), contents.substr(0, half), temp_path); !s.ok()) return s;
  if (crashed(WriteStep::kHalfWritten)) return absl::AbortedError("crash point");
  if (absl::Status s = WriteAll(fd.get(), contents.substr(half), temp_path); !s.ok()) return s;
  if (crashed(WriteStep::kWritten)) return absl::AbortedError("crash point");
  if (fsync(fd.get()) != 0) return ErrnoToStatus(errno, absl::StrCat("fsync of ", temp_path));
  if (crashed(WriteStep::kSynced)) return absl::AbortedError("crash point");
  fd.Reset();
  if (rename(temp_path.c_str(), final_path.c_str()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("renaming ", temp_path, " to ", final_path));
  }
  if (crashed(WriteStep::kRenamed)) return absl::AbortedError("crash point");
  // The rename is durable only once the directory is.
  return SyncDir(dir);
}

absl::StatusOr<std::vector<v1::AttachmentRecord>> StateStore::Load() {
  const std::string file = path();
  auto text = ReadFileToString(file);
  if (absl::IsNotFound(text.status())) return std::vector<v1::AttachmentRecord>{};
  // Any other failure is not "nothing recorded": the next save would
  // overwrite the record.
  if (!text.ok()) return text.status();
  v1::StateFile state;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // a newer daemon's record
  auto parsed = google::protobuf::util::JsonStringToMessage(*text, &state, options);
  if (parsed.ok() && state.format() > 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        file, " was written by a newer ublkgwd (format ", state.format(),
        "); this one leaves it alone and records nothing: run the newer daemon"));
  }
  if (!parsed.ok() || state.format() != 1) {
    const std::string aside = file + ".corrupt";
    std::error_code ec;
    std::filesystem::rename(file, aside, ec);
    return absl::DataLossError(absl::StrCat(
        file, " is not a ublkgw state record (",
        parsed.ok() ? absl::StrCat("format ", state.format()) : std::string(parsed.message()),
        "); moved it to ", aside, " and started with no volumes: attach them again"));
  }
  return std::vector<v1::AttachmentRecord>(state.attachments().begin(), state.attachments().end());
}

absl::Status StateStore::Save(const std::vector<v1::AttachmentRecord>& records,
                              const CrashHook& crash) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir_, ec)) {
    // Parents as needed (a fresh host may lack /var/lib); the directory
    // itself is the daemon's alone.
    if (!std::filesystem::create_directories(dir_, ec) && ec) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create the state directory ", dir_, ": ", ec.message()));
    }
    if (chmod(dir_.c_str(), 0700) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("chmod of the state directory ", dir_));
    }
  }
  v1::StateFile state;
  state.set_format(1);
  for (const auto& r : records) *state.add_attachments() = r;
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  auto printed = google::protobuf::util::MessageToJsonString(state, &json, options);
  if (!printed.ok()) return absl::InternalError(std::string(printed.message()));
  return WriteFileAtomically(dir_, kFileName, json, crash);
}

}  // namespace ublkgw::control
