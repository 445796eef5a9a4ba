#include "testing/result_matchers.h"

#include <gtest/gtest-spi.h>

#include <memory>
#include <string>

namespace berth::testing {
namespace {

using ::testing::Not;

Result<int> Seven() { return 7; }
Result<int> Missing() { return Fail(ErrorCode::kNotFound, "no such blob"); }
Result<void> Done() { return Ok(); }
Result<void> Refused() {
  return WithContext(Result<void>(Fail(ErrorCode::kPermissionDenied, "refused")), "open root");
}

TEST(ResultMatchersTest, OkChecksPassOnSuccess) {
  EXPECT_OK(Seven());
  ASSERT_OK(Done());
  ASSERT_OK_AND_ASSIGN(int value, Seven());
  EXPECT_EQ(value, 7);
  ASSERT_OK_AND_ASSIGN(auto owned, Result<std::unique_ptr<int>>(std::make_unique<int>(3)));
  EXPECT_EQ(*owned, 3);
}

TEST(ResultMatchersTest, OkChecksFailNamingTheError) {
  EXPECT_NONFATAL_FAILURE(EXPECT_OK(Missing()), "Missing() failed with NOT_FOUND: no such blob");
  EXPECT_FATAL_FAILURE(ASSERT_OK(Refused()), "failed with PERMISSION_DENIED: open root: refused");
  EXPECT_FATAL_FAILURE(
      {
        ASSERT_OK_AND_ASSIGN(int value, Missing());
        (void)value;
      },
      "no such blob");
}

TEST(ResultMatchersTest, FailsWithMatchesCodeAndPhrase) {
  EXPECT_THAT(Missing(), FailsWith(ErrorCode::kNotFound));
  EXPECT_THAT(Missing(), FailsWith(ErrorCode::kNotFound, "such blob"));
  EXPECT_THAT(Refused(), FailsWith(ErrorCode::kPermissionDenied, "open root: refused"));
  EXPECT_THAT(Missing(), Not(FailsWith(ErrorCode::kInternal)));
  EXPECT_THAT(Missing(), Not(FailsWith(ErrorCode::kNotFound, "tag")));
  EXPECT_THAT(Seven(), Not(FailsWith(ErrorCode::kNotFound)));
}

TEST(ResultMatchersTest, FailsWithExplainsAMismatch) {
  EXPECT_NONFATAL_FAILURE(EXPECT_THAT(Missing(), FailsWith(ErrorCode::kInternal)),
                          "failed with NOT_FOUND instead of INTERNAL: no such blob");
  EXPECT_NONFATAL_FAILURE(EXPECT_THAT(Seven(), FailsWith(ErrorCode::kNotFound)), "succeeded");
  EXPECT_NONFATAL_FAILURE(EXPECT_THAT(Missing(), FailsWith(ErrorCode::kNotFound, "tag")),
                          "without \"tag\" in: no such blob");
}

}  // namespace
}  // namespace berth::testing
