// File: berth/peers/observer.h
//
// BlobServerObserver hears what the peer endpoint (blob_server.h) answers, for counting
// (berthd's metrics, berth/metrics/daemon_metrics.h). Without an observer the server reports
// nothing.
//
// Every value is from a small fixed set, so the metrics it feeds stay bounded whatever peers
// send: methods are folded into GET, HEAD and "other", paths into what was asked for, and
// statuses are the few the server answers with. Never a repository name or a digest.
//
// Thread safety: called from every connection's thread at once; implementations must be
// thread-safe and cheap (no I/O, no blocking).
#pragma once

#include <cstdint>
#include <string_view>

namespace berth::peers {

// What a request asked for.
enum class RequestKind {
  kManifest,  // /v2/<name>/manifests/<reference>
  kBlob,      // /v2/<name>/blobs/<digest>
  kOther,     // /v2/, and everything the endpoint refuses (catalog, uploads, other paths)
};

std::string_view RequestKindName(RequestKind kind);  // "manifest", "blob", "other"

// The method as a metric label: "GET", "HEAD" or "other".
std::string_view MethodLabel(std::string_view method);

class BlobServerObserver {
 public:
  virtual ~BlobServerObserver() = default;

  // One response was sent (or cut short by a peer that went away): `method` is
  // MethodLabel()'s, `status` the HTTP status, `body_bytes` the content bytes written.
  virtual void RequestDone(std::string_view method, RequestKind kind, int status,
                           uint64_t body_bytes) = 0;
  // A request for content was refused because max_concurrent_uploads responses were running.
  virtual void UploadRefused() = 0;
};

}  // namespace berth::peers
