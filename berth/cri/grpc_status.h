// File: berth/cri/grpc_status.h
//
// The one mapping from berth::Error to grpc::Status. Every CRI and Admin handler returns
// ToGrpcStatus(error) for a failure and nothing else builds an error Status (except
// Admin.PullProgress's CANCELLED when its client goes away, which has no Error), so a code means
// the same thing on every RPC (as containerd's errgrpc.ToGRPC does).
//
// Thread safety: a pure function.
#pragma once

#include <grpcpp/support/status.h>

#include "berth/base/error.h"

namespace berth::cri {

// Same-named codes map one to one (berth's codes mirror gRPC's canonical codes): kInvalidArgument
// → INVALID_ARGUMENT, kNotFound → NOT_FOUND, kUnauthenticated → UNAUTHENTICATED,
// kPermissionDenied → PERMISSION_DENIED, kUnavailable → UNAVAILABLE, kDataLoss → DATA_LOSS,
// kResourceExhausted → RESOURCE_EXHAUSTED, kCancelled → CANCELLED, kDeadlineExceeded →
// DEADLINE_EXCEEDED, and so on. The message is error.ToString() (context frames included),
// which Error has already passed through RedactSecrets(), cut in the middle to at most 2 KiB.
grpc::Status ToGrpcStatus(const Error& error);

// The client side's inverse, for a failed call: the same-named code and the status message
// (OK is not an error; callers check status.ok() first). Used by ImageServiceClient.
Error FromGrpcStatus(const grpc::Status& status);

}  // namespace berth::cri
