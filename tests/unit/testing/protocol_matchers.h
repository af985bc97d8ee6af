// gMock matcher for NBD protocol violations:
//   EXPECT_THAT(status_or_statusor, IsViolation(nbd::ProtocolError::kBadMagic));
#ifndef UBLKGW_TESTS_UNIT_TESTING_PROTOCOL_MATCHERS_H_
#define UBLKGW_TESTS_UNIT_TESTING_PROTOCOL_MATCHERS_H_

#include <string>

#include "gmock/gmock.h"
#include "nbd/protocol_error.h"
#include "testing/status_matchers.h"

namespace ublkgw::testing {

MATCHER_P(IsViolation, error,
          "protocol violation " + std::string(nbd::ProtocolErrorName(error))) {
  *result_listener << "status is " << GetStatus(arg);
  return nbd::GetProtocolError(GetStatus(arg)) == error;
}

}  // namespace ublkgw::testing

#endif  // UBLKGW_TESTS_UNIT_TESTING_PROTOCOL_MATCHERS_H_
