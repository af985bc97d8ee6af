// The state record: round trips, and a crash at every step of a write
// (including a torn write and a SIGKILL at a random instant) leaves the
// previous record or the new one, never neither.
#include "control/state_store.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

// How gtest prints a record in a failure. Its own protobuf printer trips
// GCC 12's -Wrestrict false positive (GCC bug 105329) in Release builds.
namespace ublkgw::v1 {
void PrintTo(const AttachmentRecord& record, std::ostream* os) { *os << record.ShortDebugString(); }
}  // namespace ublkgw::v1

namespace ublkgw::control {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::IsOkAndHolds;
using ::ublkgw::testing::StatusIs;

std::vector<v1::AttachmentRecord> Records(int n, const std::string& tag) {
  std::vector<v1::AttachmentRecord> out;
  for (int i = 0; i < n; ++i) {
    v1::AttachmentRecord r;
    r.set_device_id(static_cast<uint32_t>(i));
    r.mutable_request()->set_uri("nbd://127.0.0.1/" + tag + std::to_string(i));
    r.mutable_request()->set_depth(64);
    r.mutable_request()->set_read_only(i % 2 == 1);
    out.push_back(r);
  }
  return out;
}

std::string Uri0(const std::vector<v1::AttachmentRecord>& r) {
  return r.empty() ? "" : r[0].request().uri();
}

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ublkgw::testing::FreshTestDir();
  }
  std::string dir_;
};

TEST_F(StateStoreTest, NothingRecordedIsAnEmptyList) {
  EXPECT_THAT(StateStore(dir_).Load(), IsOkAndHolds(IsEmpty()));
}

TEST_F(StateStoreTest, RoundTripsAndCreatesAPrivateDirectory) {
  StateStore store(dir_);
  ASSERT_THAT(store.Save(Records(3, "a")), IsOk());
  auto loaded = store.Load();
  ASSERT_THAT(loaded, IsOkAndHolds(SizeIs(3)));
  EXPECT_EQ((*loaded)[2].request().uri(), "nbd://127.0.0.1/a2");
  EXPECT_TRUE((*loaded)[1].request().read_only());
  EXPECT_EQ((*loaded)[1].request().depth(), 64u);
  EXPECT_EQ(std::filesystem::status(dir_).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_all);
  EXPECT_FALSE(std::filesystem::exists(store.path() + ".tmp"));
  ASSERT_THAT(store.Save({}), IsOk());
  EXPECT_THAT(store.Load(), IsOkAndHolds(IsEmpty()));
}

TEST_F(StateStoreTest, ACrashAtAnyStepKeepsTheOldRecordOrTheNew) {
  const WriteStep steps[] = {WriteStep::kTempCreated, WriteStep::kHalfWritten, WriteStep::kWritten,
                             WriteStep::kSynced, WriteStep::kRenamed};
  for (WriteStep step : steps) {
    std::filesystem::remove_all(dir_);
    StateStore store(dir_);
    ASSERT_THAT(store.Save(Records(2, "old")), IsOk());
    EXPECT_THAT(store.Save(Records(4, "new"), [&](WriteStep s) { return s == step; }),
                StatusIs(absl::StatusCode::kAborted));
    // The "restarted daemon" reads what survived.
    auto loaded = StateStore(dir_).Load();
    ASSERT_THAT(loaded, IsOk()) << static_cast<int>(step);
    if (step == WriteStep::kRenamed) {
      EXPECT_EQ(Uri0(*loaded), "nbd://127.0.0.1/new0");
      EXPECT_THAT(*loaded, SizeIs(4));
    } else {
      EXPECT_EQ(Uri0(*loaded), "nbd://127.0.0.1/old0") << static_cast<int>(step);
      EXPECT_THAT(*loaded, SizeIs(2));
    }
    // And the next write succeeds over the leftover temp file.
    ASSERT_THAT(store.Save(Records(1, "next")), IsOk());
    EXPECT_THAT(StateStore(dir_).Load(), IsOkAndHolds(SizeIs(1)));
  }
}

TEST_F(StateStoreTest, ACorruptRecordIsMovedAsideNotLost) {
  std::filesystem::create_directories(dir_);
  std::ofstream(dir_ + "/state.json") << "{\"format\": 1, \"attachments\": [{\"device_id\": ";
  EXPECT_THAT(StateStore(dir_).Load(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("state.json.corrupt")));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/state.json"));
  std::ifstream aside(dir_ + "/state.json.corrupt");
  std::string text((std::istreambuf_iterator<char>(aside)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("attachments"));
}

TEST_F(StateStoreTest, ANewerDaemonsRecordIsLeftAlone) {
  std::filesystem::create_directories(dir_);
  std::ofstream(dir_ + "/state.json") << "{\"format\": 9}";
  EXPECT_THAT(StateStore(dir_).Load(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("newer ublkgwd (format 9)")));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/state.json"));
}

TEST_F(StateStoreTest, FormatZeroIsNotARecord) {
  std::filesystem::create_directories(dir_);
  std::ofstream(dir_ + "/state.json") << "{}";
  EXPECT_THAT(StateStore(dir_).Load(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("format 0")));
}

// A real process, killed with SIGKILL at random instants while it rewrites
// the record as fast as it can: every survivor is a whole record.
TEST_F(StateStoreTest, SigkillDuringWritesNeverLeavesATornRecord) {
  ASSERT_THAT(StateStore(dir_).Save(Records(3, "w")), IsOk());
  std::mt19937 rng(12345);
  for (int round = 0; round < 10; ++round) {
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      StateStore store(dir_);
      for (int i = 0;; ++i) (void)store.Save(Records(1 + i % 5, "w"));
    }
    absl::SleepFor(absl::Microseconds(200 + rng() % 5000));
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    auto loaded = StateStore(dir_).Load();
    ASSERT_THAT(loaded, IsOk()) << "round " << round;
    EXPECT_GE(loaded->size(), 1u);
    EXPECT_LE(loaded->size(), 5u);
    EXPECT_EQ(Uri0(*loaded), "nbd://127.0.0.1/w0");
  }
}

}  // namespace
}  // namespace ublkgw::control
