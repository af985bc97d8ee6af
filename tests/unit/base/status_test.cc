#include "base/status.h"

#include <cerrno>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ublkgw {
namespace {

using ::testing::HasSubstr;
using ::ublkgw::testing::IsOk;
using ::ublkgw::testing::StatusIs;

TEST(ErrnoToStatusTest, ZeroIsOk) { EXPECT_THAT(ErrnoToStatus(0, "x"), IsOk()); }

TEST(ErrnoToStatusTest, MapsCodesAndKeepsContext) {
  EXPECT_THAT(ErrnoToStatus(ENOENT, "open /dev/x"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("open /dev/x: No such file")));
  EXPECT_THAT(ErrnoToStatus(EACCES, "c"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(ErrnoToStatus(EINVAL, "c"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ErrnoToStatus(EOPNOTSUPP, "c"), StatusIs(absl::StatusCode::kUnimplemented));
  EXPECT_THAT(ErrnoToStatus(524, "c"),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("ENOTSUPP")));
  EXPECT_THAT(ErrnoToStatus(ECONNREFUSED, "c"), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(ErrnoToStatus(ETIMEDOUT, "c"), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(ErrnoToStatus(EIO, "c"), StatusIs(absl::StatusCode::kUnknown));
}

TEST(StatusToNegErrnoTest, DataPathErrors) {
  EXPECT_EQ(StatusToNegErrno(absl::OkStatus()), 0);
  EXPECT_EQ(StatusToNegErrno(absl::InvalidArgumentError("x")), -EINVAL);
  EXPECT_EQ(StatusToNegErrno(absl::UnimplementedError("x")), -EOPNOTSUPP);
  EXPECT_EQ(StatusToNegErrno(absl::FailedPreconditionError("x")), -EROFS);
  EXPECT_EQ(StatusToNegErrno(absl::UnavailableError("x")), -EIO);
  EXPECT_EQ(StatusToNegErrno(absl::InternalError("x")), -EIO);
}

TEST(StatusRoundTripTest, ErrnoSurvivesForDataPathCodes) {
  for (int err : {EINVAL, EOPNOTSUPP, ETIMEDOUT}) {
    EXPECT_EQ(StatusToNegErrno(ErrnoToStatus(err, "x")), -err) << err;
  }
}

}  // namespace
}  // namespace ublkgw
