#include "berth/cri/grpc_status.h"

#include <gtest/gtest.h>

#include <utility>

namespace berth::cri {
namespace {

TEST(ToGrpcStatusTest, EveryCodeMapsToItsGrpcNamesake) {
  const std::pair<ErrorCode, grpc::StatusCode> cases[] = {
      {ErrorCode::kCancelled, grpc::StatusCode::CANCELLED},
      {ErrorCode::kUnknown, grpc::StatusCode::UNKNOWN},
      {ErrorCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT},
      {ErrorCode::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED},
      {ErrorCode::kNotFound, grpc::StatusCode::NOT_FOUND},
      {ErrorCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS},
      {ErrorCode::kPermissionDenied, grpc::StatusCode::PERMISSION_DENIED},
      {ErrorCode::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED},
      {ErrorCode::kFailedPrecondition, grpc::StatusCode::FAILED_PRECONDITION},
      {ErrorCode::kAborted, grpc::StatusCode::ABORTED},
      {ErrorCode::kOutOfRange, grpc::StatusCode::OUT_OF_RANGE},
      {ErrorCode::kUnimplemented, grpc::StatusCode::UNIMPLEMENTED},
      {ErrorCode::kInternal, grpc::StatusCode::INTERNAL},
      {ErrorCode::kUnavailable, grpc::StatusCode::UNAVAILABLE},
      {ErrorCode::kDataLoss, grpc::StatusCode::DATA_LOSS},
      {ErrorCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED},
  };
  for (const auto& [code, expected] : cases) {
    grpc::Status status = ToGrpcStatus(Error(code, "boom"));
    EXPECT_EQ(status.error_code(), expected) << ErrorCodeName(code);
    EXPECT_EQ(status.error_message(), "boom");
    Error back = FromGrpcStatus(status);
    EXPECT_EQ(back.code(), code) << ErrorCodeName(code);
    EXPECT_EQ(back.message(), "boom");
  }
}

TEST(ToGrpcStatusTest, HugeMessageIsBoundedKeepingBothEnds) {
  // gRPC cannot deliver a status over its metadata limit (8 KiB); a megabyte reference echoed in
  // an error must still reach the client as INVALID_ARGUMENT with its cause.
  Error error = Error(ErrorCode::kInvalidArgument,
                      "repository name must not be more than 255 "
                      "characters")
                    .WithContext("pull example.com/" + std::string(1 << 20, 'a'));
  grpc::Status status = ToGrpcStatus(error);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LE(status.error_message().size(), 2100u);
  EXPECT_EQ(status.error_message().rfind("pull example.com/aaa", 0), 0u);
  EXPECT_NE(status.error_message().find("bytes cut"), std::string::npos);
  EXPECT_NE(status.error_message().find("must not be more than 255 characters"), std::string::npos);
  EXPECT_EQ(ToGrpcStatus(Error(ErrorCode::kNotFound, "short")).error_message(), "short");
}

TEST(ToGrpcStatusTest, MessageHasContextAndNoCredentials) {
  Error error =
      Error(ErrorCode::kUnauthenticated,
            "GET https://user:hunter2@r.example/v2/ failed: Authorization: Basic Zm9vOmJhcg==")
          .WithContext("pull r.example/app:1");
  grpc::Status status = ToGrpcStatus(error);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(status.error_message().find("pull r.example/app:1"), std::string::npos);
  EXPECT_EQ(status.error_message().find("hunter2"), std::string::npos);
  EXPECT_EQ(status.error_message().find("Zm9vOmJhcg"), std::string::npos);
}

}  // namespace
}  // namespace berth::cri
