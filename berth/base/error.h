// File: berth/base/error.h
//
// Error is the one error value of berth: a code, a human message, and a chain of context frames
// added as the error travels up ("fetch blob sha256:ab…" → "pull docker.io/library/busybox:latest").
//
// The codes mirror gRPC's canonical codes, with the same numeric values, so that the CRI adapter
// maps them to grpc::Status in one place (berth/cri) and containerd users recognise them:
//
//   kInvalidArgument    the caller sent something malformed (bad reference, bad config value)
//   kNotFound           the thing asked for does not exist (image, blob, manifest at registry)
//   kAlreadyExists      creating something that is already there
//   kFailedPrecondition the system is not in a state that allows the operation
//   kUnauthenticated    credentials missing or rejected
//   kPermissionDenied   credentials accepted but not allowed
//   kUnavailable        transient: connection refused, 5xx, dead mirror (safe to retry)
//   kDeadlineExceeded   a timeout or no-progress watchdog fired
//   kCancelled          the caller went away
//   kResourceExhausted  disk full, size limit, too many requests
//   kDataLoss           bytes do not match their digest or size
//   kUnimplemented      a format or feature berth does not support
//   kInternal           a bug or an unexpected OS failure
//
// Messages and context frames are passed through RedactSecrets() when the Error is built, so a
// credential that slipped into a message can never reach a log line, a CLI error or a gRPC status.
//
// Thread safety: Error is a value type; distinct objects may be used from distinct threads.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace berth {

enum class ErrorCode : int {
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// Returns the gRPC spelling of `code`, e.g. "NOT_FOUND".
std::string_view ErrorCodeName(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message);

  ErrorCode code() const { return code_; }
  // The innermost message, without context.
  const std::string& message() const { return message_; }
  // Context frames, innermost first.
  const std::vector<std::string>& context() const { return context_; }

  // Returns this error with one more (outer) context frame. The code is unchanged.
  Error WithContext(std::string frame) &&;
  Error WithContext(std::string frame) const&;

  // "outer: inner: message", the form shown to users.
  std::string ToString() const;

  friend bool operator==(const Error&, const Error&) = default;

 private:
  ErrorCode code_;
  std::string message_;
  std::vector<std::string> context_;
};

// Returns the error for a failed POSIX call: ENOSPC/EDQUOT map to kResourceExhausted, ENOENT to
// kNotFound, EEXIST to kAlreadyExists, EACCES/EPERM to kPermissionDenied, the rest to kInternal.
// The message is "<what>: <strerror(errnum)>".
Error ErrnoError(int errnum, std::string_view what);

}  // namespace berth
