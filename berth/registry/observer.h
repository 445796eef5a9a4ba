// File: berth/registry/observer.h
//
// RegistryObserver hears what the registry client (client.h) and the curl transport
// (curl_transport.h) do, for counting (berthd's metrics, berth/metrics/daemon_metrics.h). Both
// take an optional observer; without one they report nothing.
//
// Every `host` is an endpoint's host as configured ("registry-1.docker.io", "mirror.local:5000")
// or a peer's address from the membership ("10.0.0.7:5050"), never a redirect target, a
// repository, a reference or anything with credentials, so the set of values stays as small as
// the node's registry configuration and its cluster.
//
// Thread safety: called from the threads of every pull at once; implementations must be
// thread-safe and cheap (no I/O, no blocking).
#pragma once

#include <cstdint>
#include <string_view>

namespace berth::registry {

// What a request fetched, by the client call that made it.
enum class FetchKind {
  kManifest,  // Resolve, FetchManifest: manifests and indexes
  kConfig,    // FetchSmallBlob: image configs
  kLayer,     // FetchBlob: layers
};

std::string_view FetchKindName(FetchKind kind);  // "manifest", "config", "layer"

// Why the client retried a request on the same endpoint.
enum class RetryReason {
  kRetryAfter,   // 429 or 503 with Retry-After
  kStatus,       // another 429 or 5xx
  kInterrupted,  // the transfer broke off (resumed with Range when it had made progress)
  kTimeout,      // the transport timed out (connect timeout)
};

std::string_view RetryReasonName(RetryReason reason);  // "retry_after", "status", ...

// Which watchdog gave up on an exchange (RetryPolicy / HttpRequest).
enum class Watchdog {
  kStall,    // no byte for progress_timeout
  kTooSlow,  // under min_bytes_per_second over min_speed_window
};

std::string_view WatchdogName(Watchdog watchdog);  // "stall", "too_slow"

// Where a blob's bytes came from.
enum class BlobSource {
  kRegistry,  // one of the registry's endpoints (a mirror or the registry itself)
  kPeer,      // a berth peer (RegistryEndpoint::is_peer)
};

std::string_view BlobSourceName(BlobSource source);  // "registry", "peer"

// Why a peer was given up on for one blob.
enum class PeerFailure {
  kNotFound,     // it does not have the blob (404)
  kUnavailable,  // refused, unreachable, TLS, a watchdog (stalled or too slow), 429 or 5xx
  kBadBytes,     // what it sent does not match the blob's size or digest
  kError,        // any other answer (401, 403, a bad redirect, …)
};

std::string_view PeerFailureName(PeerFailure failure);  // "not_found", "unavailable", ...

class RegistryObserver {
 public:
  virtual ~RegistryObserver() = default;

  // One HTTP exchange with `host` ended (redirects followed count once, as the endpoint's):
  // `status` is the final HTTP status, or 0 when the transport failed (refused, TLS, timeout).
  // `bytes` is the body received for `kind`.
  virtual void RequestDone(std::string_view host, FetchKind kind, int status, uint64_t bytes) = 0;
  // The client waits and asks `host` again.
  virtual void Retried(std::string_view host, RetryReason reason) = 0;
  // A request failed on `host` and moves on to the next endpoint (a mirror's fallback).
  virtual void FellBack(std::string_view host) = 0;
  // `host` was given up on and is skipped first for a while (RetryPolicy::dead_endpoint_memory).
  virtual void EndpointDead(std::string_view host) = 0;
  // A watchdog of the transport gave up on an exchange.
  virtual void WatchdogTripped(Watchdog watchdog) = 0;
  // One exchange for a blob (a layer or a config) received `bytes` of body from `host`.
  virtual void BlobBytes(BlobSource /*source*/, std::string_view /*host*/, uint64_t /*bytes*/) {}
  // The peer `peer` was given up on for one blob and the fetch moved on (next home peer, then
  // the registry).
  virtual void PeerGivenUp(std::string_view /*peer*/, PeerFailure /*reason*/) {}
};

}  // namespace berth::registry
