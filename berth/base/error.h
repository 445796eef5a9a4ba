// File: berth/base/error.h
//
// Error is the one error value of berth: a code, a human message, and a chain of context frames
// added as the error travels up ("fetch blob sha256:ab…" → "pull
// docker.io/library/busybox:latest").
//
// The codes are gRPC's canonical codes, number for number, so that the CRI adapter maps them to
// grpc::Status in one function (berth/cri/grpc_status.h) and containerd users recognise them.
// Each enumerator below says when to use it, its gRPC name, and whether a caller may retry the
// same operation unchanged. Callers branch on codes (the registry client moves to the next
// endpoint on kUnavailable and retries on kAborted / kDeadlineExceeded), so pick the code by
// what the caller can do about the failure, not by where it happened.
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
  // kCancelled (gRPC "CANCELLED"): the caller stopped the operation (CancelToken::Cancel(), a
  // gRPC client that went away, SQLite interrupted). Not retried: the caller no longer wants it.
  kCancelled = 1,
  // kUnknown (gRPC "UNKNOWN"): a status from outside berth whose code does not map to one of
  // these (FromGrpcStatus). berth code never produces it; use kInternal instead. Not retryable.
  kUnknown = 2,
  // kInvalidArgument (gRPC "INVALID_ARGUMENT"): the input is malformed whatever the state of the
  // system: a bad reference, a bad config value, an unusable TLS file, a registry's HTTP 400.
  // Not retryable without changing the input.
  kInvalidArgument = 3,
  // kDeadlineExceeded (gRPC "DEADLINE_EXCEEDED"): a time limit ran out before the operation
  // finished: a CancelToken's deadline, or a transport's connect timeout. Retryable if the
  // caller still has time (the registry client retries a timed-out exchange).
  kDeadlineExceeded = 4,
  // kNotFound (gRPC "NOT_FOUND"): the thing asked for does not exist: an image, a blob, a
  // snapshot, a file (ENOENT), a manifest at the registry (HTTP 404). Not retryable.
  kNotFound = 5,
  // kAlreadyExists (gRPC "ALREADY_EXISTS"): a create found its target already there (EEXIST, a
  // UNIQUE constraint). Not retryable; the caller usually treats it as done or picks a new name.
  kAlreadyExists = 6,
  // kPermissionDenied (gRPC "PERMISSION_DENIED"): the caller is known but not allowed: EACCES,
  // EPERM, a read-only file system or database, a registry's HTTP 403. Not retryable.
  kPermissionDenied = 7,
  // kResourceExhausted (gRPC "RESOURCE_EXHAUSTED"): out of disk (ENOSPC, EDQUOT, SQLITE_FULL) or
  // memory, or over a size limit. Not retried by berth: it ends the whole request, since another
  // endpoint or another attempt would hit the same wall.
  kResourceExhausted = 8,
  // kFailedPrecondition (gRPC "FAILED_PRECONDITION"): the system is not in a state that allows
  // the operation (not a mount point, a snapshot still has children, a constraint other than
  // uniqueness failed). Not retryable until something changes that state.
  kFailedPrecondition = 9,
  // kAborted (gRPC "ABORTED"): the operation started and broke off part-way for a transient
  // reason: a connection reset or a truncated response. Retryable from the start, or from the
  // last byte received; the registry client's retry loop depends on this code.
  kAborted = 10,
  // kOutOfRange (gRPC "OUT_OF_RANGE"): a read or range past the end of its data (a registry's
  // HTTP 416 for a resume offset past the blob's end). Not retryable with the same range.
  kOutOfRange = 11,
  // kUnimplemented (gRPC "UNIMPLEMENTED"): a format, media type or feature berth does not
  // support. Not retryable.
  kUnimplemented = 12,
  // kInternal (gRPC "INTERNAL"): a bug, a broken invariant or an unexpected OS failure (any errno
  // ErrnoError() does not map). Not retryable; it ends the whole request.
  kInternal = 13,
  // kUnavailable (gRPC "UNAVAILABLE"): a dependency cannot serve the request right now: DNS,
  // connection refused, a failed TLS handshake, a stalled or too slow download, an HTTP 5xx or
  // 429, a busy database or mount. Retryable later or elsewhere (when the transport fails this
  // way the registry client marks the endpoint dead and moves to the next mirror).
  kUnavailable = 14,
  // kDataLoss (gRPC "DATA_LOSS"): stored or received bytes are wrong: a digest or size mismatch,
  // a corrupt database. Not retryable from the same source; another mirror may have good bytes.
  kDataLoss = 15,
  // kUnauthenticated (gRPC "UNAUTHENTICATED"): credentials are missing or were rejected (HTTP
  // 401). Retryable only with new credentials (the registry client asks for a token once).
  kUnauthenticated = 16,
};

// Returns the gRPC spelling of `code`, e.g. "NOT_FOUND"; "UNKNOWN" for a value outside the enum.
std::string_view ErrorCodeName(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string_view message);

  ErrorCode code() const { return code_; }
  // The innermost message, without context.
  const std::string& message() const { return message_; }
  // Context frames, innermost first.
  const std::vector<std::string>& context() const { return context_; }

  // Returns this error with one more (outer) context frame. The code is unchanged.
  Error WithContext(std::string_view frame) &&;
  Error WithContext(std::string_view frame) const&;

  // "outer: inner: message", the form shown to users.
  std::string ToString() const;

  friend bool operator==(const Error&, const Error&) = default;

 private:
  ErrorCode code_;
  std::string message_;
  std::vector<std::string> context_;
};

// Returns the error for a failed POSIX call: ENOSPC/EDQUOT map to kResourceExhausted, ENOENT to
// kNotFound, EEXIST to kAlreadyExists, EACCES/EPERM/EROFS to kPermissionDenied, the rest to
// kInternal.
// The message is "<what>: <strerror(errnum)>".
Error ErrnoError(int errnum, std::string_view what);

}  // namespace berth
