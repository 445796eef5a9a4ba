#include "berth/base/error.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "berth/base/result.h"

namespace berth {
namespace {

Result<int> ParsePositive(int value) {
  if (value <= 0) return Fail(ErrorCode::kInvalidArgument, "not positive");
  return value;
}

Result<int> Doubled(int value) {
  BERTH_ASSIGN_OR_RETURN(int parsed, ParsePositive(value));
  return parsed * 2;
}

Result<void> CheckBoth(int a, int b) {
  BERTH_RETURN_IF_ERROR(ParsePositive(a));
  BERTH_RETURN_IF_ERROR(ParsePositive(b));
  return Ok();
}

TEST(ErrorTest, CodesHaveGrpcValuesAndNames) {
  EXPECT_EQ(static_cast<int>(ErrorCode::kNotFound), 5);
  EXPECT_EQ(static_cast<int>(ErrorCode::kUnauthenticated), 16);
  EXPECT_EQ(static_cast<int>(ErrorCode::kDataLoss), 15);
  EXPECT_EQ(ErrorCodeName(ErrorCode::kResourceExhausted), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kFailedPrecondition), "FAILED_PRECONDITION");
}

TEST(ErrorTest, ContextReadsOuterFirst) {
  Error error = Error(ErrorCode::kUnavailable, "connection refused")
                    .WithContext("fetch blob sha256:ab")
                    .WithContext("pull docker.io/library/busybox:latest");
  EXPECT_EQ(error.ToString(),
            "pull docker.io/library/busybox:latest: fetch blob sha256:ab: connection refused");
  EXPECT_EQ(error.code(), ErrorCode::kUnavailable);
  ASSERT_EQ(error.context().size(), 2u);
  EXPECT_EQ(error.context()[0], "fetch blob sha256:ab");
}

TEST(ErrorTest, MessagesAreRedactedAtConstruction) {
  Error error(ErrorCode::kUnauthenticated, "server said: Authorization: Bearer abc.def.ghi");
  EXPECT_EQ(error.message().find("abc.def.ghi"), std::string::npos) << error.message();
  Error with_context = Error(ErrorCode::kInternal, "x").WithContext("GET https://u:hunter2@h/v2/");
  EXPECT_EQ(with_context.ToString().find("hunter2"), std::string::npos);
}

TEST(ErrorTest, AssignOrReturnPropagates) {
  EXPECT_EQ(Doubled(4).value(), 8);
  Result<int> failed = Doubled(-1);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(CheckBoth(1, 2));
  EXPECT_EQ(CheckBoth(1, 0).error().message(), "not positive");
}

TEST(ErrorTest, WithContextOnResult) {
  Result<int> failed = WithContext(ParsePositive(0), "parse --count");
  EXPECT_EQ(failed.error().ToString(), "parse --count: not positive");
  Result<int> passed = WithContext(ParsePositive(3), "parse --count");
  EXPECT_EQ(passed.value(), 3);
}

TEST(ErrorTest, ErrnoMapping) {
  EXPECT_EQ(ErrnoError(ENOSPC, "write").code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(ErrnoError(ENOENT, "open").code(), ErrorCode::kNotFound);
  EXPECT_EQ(ErrnoError(EACCES, "open").code(), ErrorCode::kPermissionDenied);
  EXPECT_EQ(ErrnoError(EIO, "read").code(), ErrorCode::kInternal);
  EXPECT_NE(ErrnoError(ENOSPC, "write x").message().find("write x: "), std::string::npos);
}

}  // namespace
}  // namespace berth
