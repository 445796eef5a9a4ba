#include "berth/cri/grpc_status.h"

#include "berth/base/abbreviate.h"

namespace berth::cri {
namespace {

constexpr size_t kMaxStatusMessageBytes = 2048;

}  // namespace

grpc::Status ToGrpcStatus(const Error& error) {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  switch (error.code()) {
    case ErrorCode::kCancelled:
      code = grpc::StatusCode::CANCELLED;
      break;
    case ErrorCode::kUnknown:
      code = grpc::StatusCode::UNKNOWN;
      break;
    case ErrorCode::kInvalidArgument:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case ErrorCode::kDeadlineExceeded:
      code = grpc::StatusCode::DEADLINE_EXCEEDED;
      break;
    case ErrorCode::kNotFound:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case ErrorCode::kAlreadyExists:
      code = grpc::StatusCode::ALREADY_EXISTS;
      break;
    case ErrorCode::kPermissionDenied:
      code = grpc::StatusCode::PERMISSION_DENIED;
      break;
    case ErrorCode::kResourceExhausted:
      code = grpc::StatusCode::RESOURCE_EXHAUSTED;
      break;
    case ErrorCode::kFailedPrecondition:
      code = grpc::StatusCode::FAILED_PRECONDITION;
      break;
    case ErrorCode::kAborted:
      code = grpc::StatusCode::ABORTED;
      break;
    case ErrorCode::kOutOfRange:
      code = grpc::StatusCode::OUT_OF_RANGE;
      break;
    case ErrorCode::kUnimplemented:
      code = grpc::StatusCode::UNIMPLEMENTED;
      break;
    case ErrorCode::kInternal:
      code = grpc::StatusCode::INTERNAL;
      break;
    case ErrorCode::kUnavailable:
      code = grpc::StatusCode::UNAVAILABLE;
      break;
    case ErrorCode::kDataLoss:
      code = grpc::StatusCode::DATA_LOSS;
      break;
    case ErrorCode::kUnauthenticated:
      code = grpc::StatusCode::UNAUTHENTICATED;
      break;
  }
  // Bounded: the message may echo hostile input (a megabyte image name), and gRPC refuses to
  // deliver a status over its metadata limit, leaving the client a confusing RESOURCE_EXHAUSTED.
  return grpc::Status(code, AbbreviateMiddle(error.ToString(), kMaxStatusMessageBytes));
}

Error FromGrpcStatus(const grpc::Status& status) {
  // berth's codes are gRPC's canonical codes, number for number.
  int code = static_cast<int>(status.error_code());
  if (code < static_cast<int>(ErrorCode::kCancelled) ||
      code > static_cast<int>(ErrorCode::kUnauthenticated)) {
    code = static_cast<int>(ErrorCode::kUnknown);
  }
  return Error(static_cast<ErrorCode>(code), status.error_message());
}

}  // namespace berth::cri
