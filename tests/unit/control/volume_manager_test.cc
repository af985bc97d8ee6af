// Request validation of the control plane, on a host without ublk: bad
// requests are INVALID_ARGUMENT before anything is touched; a good one
// reaches the kernel check and fails FAILED_PRECONDITION with the reason.
#include "control/volume_manager.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "control/state_store.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace ublkgw::control {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::IsOkAndHolds;
using ::ublkgw::testing::StatusIs;

v1::AttachRequest Request(const std::string& uri, uint32_t queues = 0, uint32_t depth = 0) {
  v1::AttachRequest r;
  r.set_uri(uri);
  r.set_queues(queues);
  r.set_depth(depth);
  return r;
}

class VolumeManagerTest : public ::testing::Test {
 protected:
  static ManagerOptions NoUblk() {
    ManagerOptions o;
    o.control_path = "/nonexistent/ublk-control";
    return o;
  }
  VolumeManager volumes_{NoUblk()};
};

TEST_F(VolumeManagerTest, BadRequestsAreInvalidArguments) {
  EXPECT_THAT(volumes_.Attach(Request("")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no URI")));
  EXPECT_THAT(volumes_.Attach(Request("nbd://h/" + std::string(5000, 'x'))),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the limit is 4096")));
  EXPECT_THAT(volumes_.Attach(Request("ftp://h/x")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown scheme")));
  EXPECT_THAT(volumes_.Attach(Request("nbd://h/x", 65)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("queues must be 1 to 64")));
  EXPECT_THAT(volumes_.Attach(Request("nbd://h/x", 1, 5000)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("depth must be 1 to 1024")));
  auto bad_path = Request("nbd://h/x");
  bad_path.set_data_path(static_cast<v1::DataPath>(42));
  EXPECT_THAT(volumes_.Attach(bad_path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("data path")));
  auto long_timeout = Request("nbd://h/x");
  long_timeout.set_io_timeout_ms(86'400'001);
  EXPECT_THAT(volumes_.Attach(long_timeout),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("io_timeout_ms")));
  auto long_deadline = Request("nbd://h/x");
  long_deadline.set_reconnect_deadline_ms(UINT32_MAX);
  EXPECT_THAT(volumes_.Attach(long_deadline),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("a day")));
}

TEST_F(VolumeManagerTest, AGoodRequestNeedsTheUblkHost) {
  EXPECT_THAT(volumes_.Attach(Request("nbd://127.0.0.1:1/x", 2, 64)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ublk")));
  EXPECT_THAT(volumes_.List(), IsEmpty());
}

TEST_F(VolumeManagerTest, DetachNamesWhatIsMissing) {
  v1::DetachRequest none;
  EXPECT_THAT(volumes_.Detach(none), StatusIs(absl::StatusCode::kInvalidArgument));
  v1::DetachRequest by_path;
  by_path.set_device_path("/dev/ublkb3");
  EXPECT_THAT(volumes_.Detach(by_path),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/dev/ublkb3")));
  v1::DetachRequest by_id;
  by_id.set_device_id(3);
  EXPECT_THAT(volumes_.Detach(by_id), StatusIs(absl::StatusCode::kNotFound, HasSubstr("ublkgw list")));
}

TEST_F(VolumeManagerTest, FeaturesNeedTheUblkHost) {
  EXPECT_THAT(volumes_.GetFeatures(), StatusIs(absl::StatusCode::kFailedPrecondition));
  v1::DaemonInfo info;
  volumes_.DescribeDaemon(info);
  EXPECT_FALSE(info.ublk_available());
  EXPECT_THAT(info.ublk_unavailable_reason(), HasSubstr("ublk_drv"));
  EXPECT_EQ(info.volumes(), 0u);
}

TEST_F(VolumeManagerTest, EveryVolumeRpcNamesAMissingVolume) {
  EXPECT_THAT(volumes_.GetVolume({7, ""}), StatusIs(absl::StatusCode::kNotFound, HasSubstr("7")));
  EXPECT_THAT(volumes_.GetVolume({std::nullopt, "/dev/ublkb9"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/dev/ublkb9")));
  v1::ResizeRequest resize;
  EXPECT_THAT(volumes_.Resize(resize), StatusIs(absl::StatusCode::kInvalidArgument));
  resize.set_device_id(1);
  EXPECT_THAT(volumes_.Resize(resize), StatusIs(absl::StatusCode::kNotFound));
}

// A recorded volume that cannot be attached (here: no ublk) is listed as
// restoring, with the reason, keeps its record, and is forgotten only when
// an operator detaches it.
class RestoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ublkgw::testing::FreshTestDir();
  }
  ManagerOptions Options() const {
    ManagerOptions o;
    o.control_path = "/nonexistent/ublk-control";
    o.state_dir = dir_;
    o.restore_backoff_min = absl::Milliseconds(20);
    o.restore_backoff_max = absl::Milliseconds(40);
    return o;
  }
  void Record(std::vector<std::pair<uint32_t, std::string>> volumes) {
    std::vector<v1::AttachmentRecord> records;
    for (const auto& [id, uri] : volumes) {
      v1::AttachmentRecord r;
      r.set_device_id(id);
      r.mutable_request()->set_uri(uri);
      r.mutable_request()->set_queues(2);
      records.push_back(r);
    }
    ASSERT_THAT(StateStore(dir_).Save(records), IsOk());
  }
  std::string dir_;
};

TEST_F(RestoreTest, UnattachableRecordsAreListedAsRestoringAndKept) {
  Record({{3, "nbd://127.0.0.1:1/a"}, {5, "nbd://127.0.0.1:1/b"}});
  VolumeManager volumes(Options());
  ASSERT_THAT(volumes.LoadRecords(), IsOk());
  volumes.StartRestorer();
  // Wait (with a deadline) until a failed attempt has been recorded.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  std::vector<v1::Volume> listed;
  do {
    listed = volumes.List();
    if (listed.size() == 2 && absl::StrContains(listed[1].health_detail(), "ublk")) break;
    absl::SleepFor(absl::Milliseconds(10));
  } while (absl::Now() < deadline);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].device_id(), 3u);
  EXPECT_EQ(listed[0].device_path(), "/dev/ublkb3");
  EXPECT_EQ(listed[0].uri(), "nbd://127.0.0.1:1/a");
  EXPECT_EQ(listed[0].queues(), 2u);
  EXPECT_EQ(listed[1].health(), v1::HEALTH_RESTORING);
  EXPECT_THAT(listed[1].health_detail(), HasSubstr("ublk_drv"));

  auto got = volumes.GetVolume({5, ""});
  ASSERT_THAT(got, IsOk());
  EXPECT_FALSE(got->has_stats());
  v1::ResizeRequest resize;
  resize.set_device_id(5);
  EXPECT_THAT(volumes.Resize(resize), StatusIs(absl::StatusCode::kFailedPrecondition,
                                               HasSubstr("restoring")));

  v1::DetachRequest detach;
  detach.set_device_path("/dev/ublkb3");
  ASSERT_THAT(volumes.Detach(detach), IsOk());
  auto left = StateStore(dir_).Load();
  ASSERT_THAT(left, IsOk());
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].device_id(), 5u);
  volumes.Shutdown(OnStop::kDetach);
  // Stopping the daemon keeps what is recorded.
  EXPECT_THAT(StateStore(dir_).Load(), IsOkAndHolds(::testing::SizeIs(1)));
}

TEST_F(RestoreTest, AVolumesOwnTimeoutsOverrideTheDaemonsAndAreListed) {
  v1::AttachmentRecord record;
  record.set_device_id(4);
  record.mutable_request()->set_uri("nbd://127.0.0.1:1/a");
  record.mutable_request()->set_io_timeout_ms(7'000);
  record.mutable_request()->set_reconnect_deadline_ms(0);
  ASSERT_THAT(StateStore(dir_).Save({record}), IsOk());
  ManagerOptions options = Options();
  options.reconnect.io_timeout = absl::Seconds(30);
  VolumeManager volumes(options);
  ASSERT_THAT(volumes.LoadRecords(), IsOk());
  const std::vector<v1::Volume> listed = volumes.List();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].io_timeout_ms(), 7'000u);
  EXPECT_EQ(listed[0].reconnect_deadline_ms(), 0u);  // set to 0: fail at once
  // Unset: the daemon's.
  record.mutable_request()->clear_io_timeout_ms();
  record.mutable_request()->clear_reconnect_deadline_ms();
  ASSERT_THAT(StateStore(dir_).Save({record}), IsOk());
  VolumeManager defaults(options);
  ASSERT_THAT(defaults.LoadRecords(), IsOk());
  ASSERT_EQ(defaults.List().size(), 1u);
  EXPECT_EQ(defaults.List()[0].io_timeout_ms(), 30'000u);
  EXPECT_EQ(defaults.List()[0].reconnect_deadline_ms(), 120'000u);
}

TEST_F(RestoreTest, AnInvalidOrDuplicateRecordIsShownNotTriedAndNotLost) {
  Record({{1, "nbd://127.0.0.1:1/good"}, {1, "nbd://127.0.0.1:1/duplicate"},
          {2, "ftp://not-nbd/x"}});
  VolumeManager volumes(Options());
  ASSERT_THAT(volumes.LoadRecords(), IsOk());
  const auto listed = volumes.List();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].uri(), "nbd://127.0.0.1:1/good");
  EXPECT_EQ(listed[1].health(), v1::HEALTH_RESTORING);
  EXPECT_THAT(listed[1].health_detail(), HasSubstr("the recorded request is invalid"));
  EXPECT_THAT(listed[1].health_detail(), HasSubstr("unknown scheme"));
  EXPECT_THAT(listed[1].health_detail(), ::testing::Not(HasSubstr("next attempt")));
}

TEST_F(RestoreTest, ANewerDaemonsRecordIsNeverOverwritten) {
  std::filesystem::create_directories(dir_);
  const std::string newer = R"({"format": 2, "attachments": [], "future": true})";
  std::ofstream(dir_ + "/state.json") << newer;
  VolumeManager volumes(Options());
  EXPECT_THAT(volumes.LoadRecords(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                              HasSubstr("newer ublkgwd")));
  v1::DaemonInfo info;
  volumes.DescribeDaemon(info);
  volumes.Shutdown(OnStop::kDetach);
  std::ifstream in(dir_ + "/state.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, newer);
}

TEST_F(RestoreTest, ACorruptRecordIsMovedAsideAndTheDaemonServesOn) {
  std::filesystem::create_directories(dir_);
  std::ofstream(dir_ + "/state.json") << "{ not json";
  VolumeManager volumes(Options());
  EXPECT_THAT(volumes.LoadRecords(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("state.json.corrupt")));
  EXPECT_THAT(volumes.List(), IsEmpty());
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/state.json.corrupt"));
}

}  // namespace
}  // namespace ublkgw::control
