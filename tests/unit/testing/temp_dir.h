// A fresh, empty directory for the running test, named after its suite and
// test, under gtest's temporary directory. Left behind for inspection.
#ifndef UBLKGW_TESTS_UNIT_TESTING_TEMP_DIR_H_
#define UBLKGW_TESTS_UNIT_TESTING_TEMP_DIR_H_

#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace ublkgw::testing {

inline std::string FreshTestDir() {
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string dir =
      ::testing::TempDir() + "/" + test->test_suite_name() + "." + test->name();
  std::filesystem::remove_all(dir);
  return dir;
}

}  // namespace ublkgw::testing

#endif  // UBLKGW_TESTS_UNIT_TESTING_TEMP_DIR_H_
