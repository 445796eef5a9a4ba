// File: berth/peers/blob_server.h
//
// BlobServer is berthd's peer endpoint (config [peers], issue 17): a read-only OCI distribution
// endpoint over HTTP/1.1 that lets the other berth nodes of a cluster fetch, by digest, what
// this node's content store holds. It answers
//
//   GET|HEAD /v2/                                200 {} (clients probe it)
//   GET|HEAD /v2/<name>/blobs/<digest>           the blob: 200, or 206 for a Range
//   GET|HEAD /v2/<name>/manifests/<digest>       the manifest, with its own media type
//
// <name> is any valid repository name (the reference grammar's path, lowercase) and is not used
// to find content: a digest is a digest. A query string is accepted; its `ns=<registry host>`
// (containerd's and berth's requests to mirrors send it) names where a missing blob comes from.
// Everything else is refused with the
// distribution spec's error JSON: a tag (a manifest reference that is not a digest) or a
// manifest digest whose blob is not a manifest 404 MANIFEST_UNKNOWN, an absent blob 404
// BLOB_UNKNOWN, an upload URL 404 BLOB_UPLOAD_UNKNOWN, the catalog, tag lists and any other path
// 404 UNSUPPORTED, a method other than GET and HEAD 405 UNSUPPORTED (Allow: GET, HEAD), a bad
// name 400 NAME_INVALID, a bad digest 400 DIGEST_INVALID, a malformed request 400, a request
// head over max_request_head_bytes 431. A request that announces a body (Content-Length,
// Transfer-Encoding) is answered and its connection closed: a body is never read. A TLS ClientHello
// on a plain endpoint is answered 400 at once, so that a client trying https first (berth's and
// containerd's rule for loopback hosts) learns the endpoint speaks plain HTTP without waiting.
//
// Headers: Content-Length, Content-Type (blobs application/octet-stream; manifests the
// document's `mediaType`, else the kind berth/image's DetectKind sees in it: OCI manifest or
// index, Docker schema2 or list, schema1), Docker-Content-Digest, Accept-Ranges: bytes (blobs),
// Docker-Distribution-API-Version: registry/2.0. A blob's Range "bytes=a-b", "bytes=a-" or
// "bytes=-n" gets 206 with Content-Range; one that starts past the end 416 with Content-Range:
// bytes */<size>. A Range asking for several ranges, or one that does not parse, gets the whole
// blob (200): clients of registries ask for one range (to resume), and multipart/byteranges
// would be code no peer uses. Manifests ignore Range.
//
// What the content store holds is verified (content/store.h) and served as above. A blob it
// lacks (GET only; HEAD answers 404) is asked of `arriving` when one is given
// (arriving_blob.h): the download of it this node is running — or one started now from the
// registry `ns` names, which this node then keeps — is sent as it arrives: 200 with
// Transfer-Encoding: chunked (the size is the registry's to tell), no Range (a Range asked of
// an arriving blob gets the whole of it; clients start again from byte 0 then), and the
// terminating chunk only once the download has ended verified. A download that fails cuts the
// response short, so the client sees an incomplete transfer and moves on; the client checks
// the digest of what it got in any case. Such a response holds an upload place like any other;
// when `arriving` refuses (too many fetches) the answer is 429, when it has nothing to follow
// (no `ns`, a bad one) 404. The registry's Authorization a requester passes on
// (registry/client.h's kRegistryAuthorizationHeader) goes to `arriving` for a fetch the request
// starts, as a Secret: it is never logged, kept or sent anywhere but to that registry.
//
// Streaming: a body goes out from the blob's file with sendfile(2) (plain HTTP) or through one
// 64 KiB buffer (TLS); no blob is held in memory but a manifest's, whose type is read from it
// (at most image::kMaxManifestBytes). Connections are persistent (HTTP/1.1 keep-alive) unless
// the client says Connection: close or speaks HTTP/1.0; a kept connection idle for
// idle_timeout is closed.
//
// Limits, so that serving never starves the node's own pulls and nobody who reaches the port can
// hold the daemon:
//   - at most max_concurrent_uploads responses with content (GET of a blob or manifest) at
//     once; another is answered 429 TOOMANYREQUESTS with Retry-After: 1 and the request counted
//     as refused. 429, not 503: the node is healthy and only shedding load, TOOMANYREQUESTS is
//     the distribution spec's code for it, and clients (containerd, berth's registry client)
//     honour Retry-After on it as on 503 — or, for a peer, move on to the next home;
//   - max_upload_rate bytes per second for all connections together (one token bucket; 0 is no
//     limit), paced per 64 KiB chunk;
//   - the TLS handshake must end within read_timeout, and a request head fit in
//     max_request_head_bytes and arrive within read_timeout once its first byte has; each 64 KiB
//     of a body must be taken by the client within read_timeout;
//   - at most max_connections connections (the next is answered 503 and closed).
//
// TLS: with tls.cert and tls.key the endpoint speaks only TLS (1.2 or later); with
// tls.client_ca too, clients must present a certificate that CA signed (mutual TLS: a cluster
// CA), and a connection without one fails in the handshake. Without, plain HTTP.
//
// Lifecycle: Start() binds, listens and loads the TLS files before it returns (so a bad address
// or certificate fails berthd's start, naming the config key) and serves on threads of its own:
// one accepting, one per connection. Stop() (or the destructor) stops accepting, closes the
// listening socket, wakes every connection (a paced or blocked write included) and waits for
// their threads to end.
//
// Thread safety: Stop() may be called from any thread, once or more. Connection threads block
// SIGPIPE (a peer that goes away is an error of the write, not a signal to the process).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "berth/base/accept_loop.h"
#include "berth/base/result.h"
#include "berth/base/unique_fd.h"
#include "berth/content/store.h"
#include "berth/peers/arriving_blob.h"
#include "berth/peers/connection.h"
#include "berth/peers/http_request.h"
#include "berth/peers/observer.h"
#include "berth/peers/token_bucket.h"

namespace berth::peers {

struct BlobServerOptions {
  // "host:port" (peers.listen): "0.0.0.0:5050", "[::]:5050"; port 0 picks a free one (port()
  // tells which).
  std::string address;
  int max_concurrent_uploads = 8;
  uint64_t max_upload_rate = 0;  // bytes per second, all connections; 0: no limit
  ServerTlsFiles tls;            // tls.cert empty: plain HTTP
  std::chrono::milliseconds read_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};
  size_t max_request_head_bytes = 8 << 10;
  int max_connections = 256;
  // Hears every response; may be null. Must outlive the server.
  BlobServerObserver* observer = nullptr;
  // Follows (or starts) the download of a blob the store lacks; null: such a blob is 404.
  // Must outlive the server.
  ArrivingBlobs* arriving = nullptr;
};

class BlobServer {
 public:
  // Serves `store` (which must outlive the server) as options say. Errors: kInvalidArgument for
  // an address that is not host:port, a host that does not resolve, or TLS files that cannot be
  // used (naming the key: peers.tls_cert, peers.tls_key, peers.tls_client_ca); when the address
  // cannot be bound, ErrnoError's code; each naming peers.listen and the address.
  static Result<std::unique_ptr<BlobServer>> Start(const content::Store& store,
                                                   BlobServerOptions options);

  BlobServer(const BlobServer&) = delete;
  BlobServer& operator=(const BlobServer&) = delete;
  ~BlobServer();

  // The port listened on.
  uint16_t port() const { return port_; }
  bool tls() const { return tls_ != nullptr; }

  void Stop();

 private:
  struct Response;
  struct Content;
  class UploadSlot;

  BlobServer(const content::Store& store, BlobServerOptions options, uint16_t port,
             UniqueSslContext tls);

  // Serves one connection until it ends; `wake` becomes readable when the server stops.
  void Serve(UniqueFd socket, int wake);
  // Reads the next request head of `connection` into `head` (bytes past it stay in `buffered`).
  // Returns false when the connection should close without an answer (closed, idle, stopped);
  // sets `refusal` to 400 or 431 when the head must be refused.
  bool ReadHead(Connection& connection, std::string& buffered, std::string& head, int& refusal);
  // Answers one request; returns whether the connection may carry another.
  bool Answer(Connection& connection, std::string_view head_text);
  // Opens what the store holds under `digest` for a request of `kind` (a manifest's media type
  // read from it), or the refusal to send instead: 404 when absent or not a manifest.
  std::variant<Content, Response> Open(const Digest& digest, RequestKind kind) const;
  // The response for a request for content: what the store has under `digest`, else what
  // arrives (ServeArriving) for a blob of repository `name`.
  bool ServeContent(Connection& connection, const RequestHead& request, RequestKind kind,
                    std::string_view name, const Digest& digest);
  // A blob the store lacks (`absent` is the 404 to send when nothing arrives either).
  bool ServeArriving(Connection& connection, const RequestHead& request, std::string_view name,
                     const Digest& digest, const Response& absent);
  // Sends what `blob` has and gets as chunks, the terminating one once it ended; false when the
  // connection failed or the download did (the response is then cut short).
  bool SendArriving(Connection& connection, ArrivingBlob& blob, const Digest& digest,
                    uint64_t& sent);
  // Writes `response` (an error or a probe answer, no content) and reports it.
  bool Send(Connection& connection, const Response& response, std::string_view method,
            RequestKind kind, bool keep_alive);
  std::chrono::nanoseconds Pace(uint64_t bytes);
  static Response TooManyRequests(std::string_view why);

  const content::Store& store_;
  const BlobServerOptions options_;
  const uint16_t port_;
  UniqueSslContext tls_;
  std::optional<TokenBucket> bucket_;  // when max_upload_rate is set
  std::atomic<int> uploads_{0};        // responses with content being sent
  std::unique_ptr<AcceptLoop> loop_;
};

// The media type to serve `document` (a manifest blob) with: its `mediaType` field, else the kind
// image::DetectKind finds. kInvalidArgument (or DetectKind's error) when it is not a manifest or
// an index.
Result<std::string> ManifestMediaType(std::string_view document);

// Whether `name` is a repository name a client may use in a /v2/<name>/ path: the reference
// grammar's path (lowercase components separated by '/'), at most Reference::kMaxPathLength.
bool IsRepositoryName(std::string_view name);

}  // namespace berth::peers
