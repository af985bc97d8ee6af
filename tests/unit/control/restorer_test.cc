// Restoring recorded volumes at start-up, with a fake ublk driver and NBD
// servers on unix sockets: nothing one volume's restore waits for (a
// server that never answers, a device being made) holds up the control
// calls of the others, another volume's restore, a detach of itself, or
// the daemon's stop; a device made for a volume detached meanwhile goes.
#include "control/restorer.h"

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "control/state_store.h"
#include "control/volume_manager.h"
#include "control/volume_request.h"
#include "engine/fake_ublk_driver.h"
#include "fake_nbd_listener.h"
#include "fake_ublk_host.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"
#include "ublk/uapi.h"

namespace ublkgw::control {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::ublkgw::engine::testing::FakeUblk;
using ::ublkgw::control::testing::FakeNbdListener;
using ::ublkgw::control::testing::FakeUblkHost;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::IsOkAndHolds;
using ::ublkgw::testing::StatusIs;

TEST(RetryAfterTest, DoublesUpToTheLongestWait) {
  const Retry first = RetryAfter(absl::Seconds(1), /*adopting=*/false, absl::Seconds(60));
  EXPECT_EQ(first.wait, absl::Seconds(1));
  EXPECT_EQ(first.next_backoff, absl::Seconds(2));
  const Retry late = RetryAfter(absl::Seconds(40), false, absl::Seconds(60));
  EXPECT_EQ(late.wait, absl::Seconds(40));
  EXPECT_EQ(late.next_backoff, absl::Seconds(60));
}

TEST(RetryAfterTest, ADeviceWaitingInTheKernelIsTriedEveryFiveSecondsAtMost) {
  const Retry retry = RetryAfter(absl::Seconds(32), /*adopting=*/true, absl::Seconds(60));
  EXPECT_EQ(retry.wait, absl::Seconds(5));
  EXPECT_EQ(retry.next_backoff, absl::Seconds(5));
}

TEST(RecordedVolumesTest, KeepsTheFirstOfAnIdAndShowsAnInvalidOneNeverTried) {
  std::vector<v1::AttachmentRecord> records(4);
  const char* uris[] = {"nbd://h/a", "nbd://h/twice", "ftp://h/x", "nbd://h/over"};
  const uint32_t ids[] = {1, 1, 2, 3};
  for (int i = 0; i < 4; ++i) {
    records[i].set_device_id(ids[i]);
    records[i].mutable_request()->set_uri(uris[i]);
  }
  const absl::Time now = absl::FromUnixSeconds(7);
  const std::vector<RecordedVolume> volumes = RecordedVolumes(records, 2, "state.json", now);
  ASSERT_EQ(volumes.size(), 2u);
  EXPECT_EQ(volumes[0].record.request().uri(), "nbd://h/a");
  EXPECT_EQ(volumes[0].progress.next_try, now);
  EXPECT_THAT(volumes[0].progress.error, IsEmpty());
  EXPECT_EQ(volumes[1].record.device_id(), 2u);
  EXPECT_EQ(volumes[1].progress.next_try, absl::InfiniteFuture());
  EXPECT_THAT(volumes[1].progress.error, HasSubstr("the recorded request is invalid"));
}

// Generous for a loaded host, and far below FakeUblkHost::kHoldLimit: a
// call that waited for a held device would take that long.
constexpr absl::Duration kPrompt = absl::Seconds(5);
constexpr absl::Duration kPatience = absl::Seconds(20);

// Checks `done` every 10 ms until it holds (true) or `deadline` passes
// (false): for what the manager shows only through List and its record.
bool Eventually(const std::function<bool()>& done, absl::Time deadline) {
  while (!done()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

class RestoreIsolationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ublkgw::testing::FreshTestDir();
    std::filesystem::create_directories(dir_);
  }
  ManagerOptions Options() const {
    ManagerOptions o;
    o.state_dir = dir_;
    o.restore_backoff_min = backoff_;
    o.restore_backoff_max = 2 * backoff_;
    return o;
  }
  void Record(std::vector<v1::AttachmentRecord> records) {
    ASSERT_THAT(StateStore(dir_).Save(records), IsOk());
  }
  static v1::AttachmentRecord Volume(uint32_t id, const std::string& uri, uint64_t cookie = 0) {
    v1::AttachmentRecord r;
    r.set_device_id(id);
    r.set_device_cookie(cookie);
    r.mutable_request()->set_uri(uri);
    return r;
  }
  static v1::DetachRequest DetachOf(uint32_t id) {
    v1::DetachRequest r;
    r.set_device_id(id);
    return r;
  }
  // Starts a manager restoring what is recorded, with `driver`.
  std::unique_ptr<VolumeManager> Start(std::unique_ptr<FakeUblkHost> driver) {
    auto volumes = std::make_unique<VolumeManager>(Options(), std::move(driver));
    EXPECT_THAT(volumes->LoadRecords(), IsOk());
    volumes->StartRestorer();
    return volumes;
  }
  std::string dir_;
  absl::Duration backoff_ = absl::Milliseconds(20);
};

// The hole this guards: restoring used to make its device under the
// control-plane mutex, so every attach and detach on the host waited for
// one volume's START_DEV (or its takeover).
TEST_F(RestoreIsolationTest, AVolumeWhoseDeviceIsBeingMadeHoldsUpNoControlCall) {
  FakeNbdListener server(dir_ + "/nbd.sock", /*silent=*/false);
  ASSERT_TRUE(server.ok());
  Record({Volume(3, server.Uri("slow"))});
  auto owned = std::make_unique<FakeUblkHost>();
  FakeUblkHost& driver = *owned;
  driver.Hold(3);
  auto volumes = Start(std::move(owned));
  ASSERT_TRUE(driver.AwaitHeld(3, absl::Now() + kPatience)) << "the restore never made its device";

  absl::Time start = absl::Now();
  const std::vector<v1::Volume> listed = volumes->List();
  EXPECT_LT(absl::Now() - start, kPrompt);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].health(), v1::HEALTH_RESTORING);

  start = absl::Now();
  EXPECT_THAT(volumes->GetFeatures(), IsOk());
  EXPECT_LT(absl::Now() - start, kPrompt);

  v1::AttachRequest other;
  other.set_uri(server.Uri("other"));
  start = absl::Now();
  EXPECT_THAT(volumes->Attach(other),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("makes no devices")));
  EXPECT_LT(absl::Now() - start, kPrompt) << "an attach waited for another volume's restore";

  start = absl::Now();
  EXPECT_THAT(volumes->Detach(DetachOf(3)), IsOk());
  EXPECT_LT(absl::Now() - start, kPrompt) << "a detach waited for the volume's restore";
  EXPECT_THAT(volumes->List(), IsEmpty());
  EXPECT_THAT(StateStore(dir_).Load(), IsOkAndHolds(IsEmpty()));

  // The attempt ends, finds its volume detached, and brings nothing back.
  driver.Release();
  ASSERT_TRUE(driver.AwaitMade(3, 1, absl::Now() + kPatience));
  volumes->Shutdown(OnStop::kDetach);
  EXPECT_EQ(driver.Begun(3), 1);
  EXPECT_THAT(StateStore(dir_).Load(), IsOkAndHolds(IsEmpty()));
}

TEST_F(RestoreIsolationTest, AServerThatNeverAnswersHoldsUpOnlyItsOwnVolume) {
  FakeNbdListener silent(dir_ + "/silent.sock", /*silent=*/true);
  FakeNbdListener good(dir_ + "/good.sock", /*silent=*/false);
  ASSERT_TRUE(silent.ok() && good.ok());
  Record({Volume(3, silent.Uri("mute"))});
  auto owned = std::make_unique<FakeUblkHost>();
  FakeUblkHost& driver = *owned;
  auto volumes = Start(std::move(owned));
  ASSERT_TRUE(silent.AwaitConnections(1, absl::Now() + kPatience));

  v1::AttachRequest other;
  other.set_uri(good.Uri("other"));
  absl::Time start = absl::Now();
  EXPECT_THAT(volumes->Attach(other), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_LT(absl::Now() - start, kPrompt);

  start = absl::Now();
  EXPECT_THAT(volumes->Detach(DetachOf(3)), IsOk());
  EXPECT_LT(absl::Now() - start, kPrompt);
  EXPECT_THAT(volumes->List(), IsEmpty());

  // The server still never answers: the stop cancels the handshake, and
  // the attempt finds its volume gone and makes no device.
  start = absl::Now();
  volumes->Shutdown(OnStop::kDetach);
  EXPECT_LT(absl::Now() - start, kPrompt);
  EXPECT_EQ(driver.Begun(3), 0);
  EXPECT_THAT(StateStore(dir_).Load(), IsOkAndHolds(IsEmpty()));
}

TEST_F(RestoreIsolationTest, AStuckRestoreHoldsUpNeitherAnotherRestoreNorASecondAttemptOfItself) {
  FakeNbdListener server(dir_ + "/nbd.sock", /*silent=*/false);
  ASSERT_TRUE(server.ok());
  Record({Volume(3, server.Uri("slow")), Volume(5, server.Uri("failing"))});
  auto owned = std::make_unique<FakeUblkHost>();
  FakeUblkHost& driver = *owned;
  driver.Hold(3);
  auto volumes = Start(std::move(owned));
  ASSERT_TRUE(driver.AwaitHeld(3, absl::Now() + kPatience));
  // /dev/ublkb5 fails and is retried (every 20 to 40 ms) meanwhile; 3 is
  // never tried twice at once.
  ASSERT_TRUE(driver.AwaitMade(5, 3, absl::Now() + kPatience))
      << "another volume's restore waited for a stuck one";
  EXPECT_EQ(driver.Begun(3), 1);
  driver.Release();
  volumes->Shutdown(OnStop::kDetach);
}

TEST_F(RestoreIsolationTest, ALeftDeviceBeingTakenOverIsDetachedOnlyOnceTheAttemptEnds) {
  FakeNbdListener server(dir_ + "/nbd.sock", /*silent=*/false);
  ASSERT_TRUE(server.ok());
  constexpr uint64_t kCookie = 0x5eed;
  Record({Volume(3, server.Uri("left"), kCookie)});
  auto owned = std::make_unique<FakeUblkHost>();
  FakeUblkHost& driver = *owned;
  ublk::ublksrv_ctrl_dev_info left{};
  left.dev_id = 3;
  left.nr_hw_queues = 1;
  left.queue_depth = 64;
  left.state = static_cast<uint16_t>(ublk::DevState::kQuiesced);
  left.flags = ublk::kFUserRecovery | ublk::kFUserRecoveryReissue;
  left.ublksrv_flags = kCookie;
  driver.LeaveDevice(left);
  driver.Hold(3);
  backoff_ = absl::Seconds(10);  // a device waiting in the kernel: retried after 5 s
  auto volumes = Start(std::move(owned));
  ASSERT_TRUE(driver.AwaitHeld(3, absl::Now() + kPatience));

  // Neither removed under the takeover nor forgotten while it may succeed.
  absl::Time start = absl::Now();
  EXPECT_THAT(volumes->Detach(DetachOf(3)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("being taken over")));
  EXPECT_LT(absl::Now() - start, kPrompt);
  ASSERT_EQ(volumes->List().size(), 1u);
  EXPECT_THAT(volumes->List()[0].health_detail(), HasSubstr("waits in the kernel"));

  // Once the attempt has failed (the next is seconds away), the detach
  // removes the left device.
  driver.Release();
  std::vector<v1::Volume> listed;
  ASSERT_TRUE(Eventually(
      [&] {
        listed = volumes->List();
        return listed.size() != 1 ||
               absl::StrContains(listed[0].health_detail(), "makes no devices");
      },
      absl::Now() + kPatience))
      << "the takeover never failed";
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_THAT(volumes->Detach(DetachOf(3)), IsOk());
  EXPECT_THAT(driver.Removed(), ElementsAre(3u));
  EXPECT_THAT(volumes->List(), IsEmpty());
  volumes->Shutdown(OnStop::kDetach);
  EXPECT_THAT(StateStore(dir_).Load(), IsOkAndHolds(IsEmpty()));
}

// The hole: Stop joined the attempts still connecting, each for up to its
// connect timeout (per connection) against a server that drops packets,
// for a result it would throw away.
TEST_F(RestoreIsolationTest, AStopEndsARestoreStillConnectingAtOnce) {
  FakeNbdListener silent(dir_ + "/silent.sock", /*silent=*/true);
  ASSERT_TRUE(silent.ok());
  const v1::AttachmentRecord volume = Volume(3, silent.Uri("mute"));
  Record({volume});
  auto attach = AttachOptionsFor(volume.request(), Options());
  ASSERT_THAT(attach.status(), IsOk());
  const absl::Duration bound = attach->connect_timeout / 4;
  ASSERT_GE(bound, absl::Seconds(2))
      << "too short to tell a cancelled connect from a timed-out one";
  auto owned = std::make_unique<FakeUblkHost>();
  FakeUblkHost& driver = *owned;
  auto volumes = Start(std::move(owned));
  ASSERT_TRUE(silent.AwaitConnections(1, absl::Now() + kPatience));

  // The server is not hung up: only the stop can end the handshake early.
  const absl::Time start = absl::Now();
  volumes->Shutdown(OnStop::kDetach);
  EXPECT_LT(absl::Now() - start, bound) << "the stop waited for a connect it would throw away";
  EXPECT_EQ(driver.Begun(3), 0);
  // Nothing is forgotten: the next daemon restores the volume.
  auto saved = StateStore(dir_).Load();
  ASSERT_THAT(saved.status(), IsOk());
  ASSERT_THAT(*saved, SizeIs(1));
  EXPECT_EQ((*saved)[0].device_id(), 3u);
}

TEST_F(RestoreIsolationTest, ARestoredVolumeIsServedOnItsIdAndRecordedWithItsMark) {
  FakeNbdListener server(dir_ + "/nbd.sock", /*silent=*/false);
  ASSERT_TRUE(server.ok());
  Record({Volume(3, server.Uri("good"))});  // no mark yet: the restore gives one
  auto owned = std::make_unique<FakeUblkHost>(/*make_devices=*/true);
  FakeUblkHost& driver = *owned;
  auto volumes = Start(std::move(owned));
  std::vector<v1::Volume> listed;
  ASSERT_TRUE(Eventually(
      [&] {
        listed = volumes->List();
        return listed.size() != 1 || listed[0].health() != v1::HEALTH_RESTORING;
      },
      absl::Now() + kPatience))
      << "still restoring: " << listed[0].health_detail();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].device_id(), 3u);
  EXPECT_EQ(listed[0].health(), v1::HEALTH_OK) << listed[0].health_detail();
  const std::shared_ptr<FakeUblk> ublk = driver.Ublk(3);
  ASSERT_NE(ublk, nullptr);
  uint64_t mark = 0;
  {
    absl::MutexLock lock(&ublk->mu);
    EXPECT_TRUE(ublk->started);
    EXPECT_EQ(ublk->info.dev_id, 3u);
    mark = ublk->info.ublksrv_flags;
  }
  EXPECT_NE(mark, 0u);

  // The record is saved just after the device joins the table.
  std::vector<v1::AttachmentRecord> saved;
  ASSERT_TRUE(Eventually(
      [&] {
        auto loaded = StateStore(dir_).Load();
        if (loaded.ok()) saved = *std::move(loaded);
        return saved.size() != 1 || saved[0].device_cookie() != 0;
      },
      absl::Now() + kPatience))
      << "the record was never saved with the device's mark";
  ASSERT_THAT(saved, SizeIs(1));
  EXPECT_EQ(saved[0].device_id(), 3u);
  EXPECT_EQ(saved[0].device_cookie(), mark);
  EXPECT_EQ(driver.Begun(3), 1);

  volumes->Shutdown(OnStop::kDetach);
  absl::MutexLock lock(&ublk->mu);
  EXPECT_TRUE(ublk->stopped);
  EXPECT_TRUE(ublk->deleted);
}

// Restorer::Finish: the operator detached the volume while its device was
// being made; the device that comes back is detached, not served.
TEST_F(RestoreIsolationTest, ADeviceMadeForAVolumeDetachedMeanwhileIsDetached) {
  FakeNbdListener server(dir_ + "/nbd.sock", /*silent=*/false);
  ASSERT_TRUE(server.ok());
  Record({Volume(3, server.Uri("gone"))});
  auto owned = std::make_unique<FakeUblkHost>(/*make_devices=*/true);
  FakeUblkHost& driver = *owned;
  driver.Hold(3);
  auto volumes = Start(std::move(owned));
  ASSERT_TRUE(driver.AwaitHeld(3, absl::Now() + kPatience)) << "the restore never made its device";
  EXPECT_THAT(volumes->Detach(DetachOf(3)), IsOk());
  EXPECT_THAT(volumes->List(), IsEmpty());

  driver.Release();
  ASSERT_TRUE(driver.AwaitMade(3, 1, absl::Now() + kPatience));
  const std::shared_ptr<FakeUblk> ublk = driver.Ublk(3);
  ASSERT_NE(ublk, nullptr);
  {
    absl::MutexLock lock(&ublk->mu);
    EXPECT_TRUE(ublk->started) << "no device came back to be detached";
    EXPECT_TRUE(ublk->mu.AwaitWithDeadline(absl::Condition(&ublk->deleted),
                                           absl::Now() + kPatience))
        << "the device made for a detached volume was left";
    EXPECT_TRUE(ublk->stopped);
  }
  EXPECT_THAT(volumes->List(), IsEmpty());
  volumes->Shutdown(OnStop::kDetach);
  EXPECT_EQ(driver.Begun(3), 1);
  EXPECT_THAT(StateStore(dir_).Load(), IsOkAndHolds(IsEmpty()));
}

}  // namespace
}  // namespace ublkgw::control
