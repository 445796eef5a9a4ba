#include "berth/registry/observer.h"

namespace berth::registry {

std::string_view FetchKindName(FetchKind kind) {
  switch (kind) {
    case FetchKind::kManifest:
      return "manifest";
    case FetchKind::kConfig:
      return "config";
    case FetchKind::kLayer:
      return "layer";
  }
  return "unknown";
}

std::string_view RetryReasonName(RetryReason reason) {
  switch (reason) {
    case RetryReason::kRetryAfter:
      return "retry_after";
    case RetryReason::kStatus:
      return "status";
    case RetryReason::kInterrupted:
      return "interrupted";
    case RetryReason::kTimeout:
      return "timeout";
  }
  return "unknown";
}

std::string_view WatchdogName(Watchdog watchdog) {
  switch (watchdog) {
    case Watchdog::kStall:
      return "stall";
    case Watchdog::kTooSlow:
      return "too_slow";
  }
  return "unknown";
}

std::string_view BlobSourceName(BlobSource source) {
  switch (source) {
    case BlobSource::kRegistry:
      return "registry";
    case BlobSource::kPeer:
      return "peer";
  }
  return "unknown";
}

std::string_view PeerFailureName(PeerFailure failure) {
  switch (failure) {
    case PeerFailure::kNotFound:
      return "not_found";
    case PeerFailure::kUnavailable:
      return "unavailable";
    case PeerFailure::kBadBytes:
      return "bad_bytes";
    case PeerFailure::kError:
      return "error";
  }
  return "unknown";
}

}  // namespace berth::registry
