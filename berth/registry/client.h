// File: berth/registry/client.h
//
// Client speaks the OCI distribution pull API to a list of endpoints (mirrors first, then the
// registry itself; see hosts.h): it resolves tags and digests to manifests, fetches manifests
// and streams blobs, verifying every byte against its digest.
//
// For each request it walks the endpoints in order, skipping those that lack the capability
// (tags resolve only on endpoints with kCapabilityResolve) and trying endpoints that failed
// recently last. On one endpoint it:
//   - adds Authorization from the Authorizer, answers a 401 by learning the challenge and
//     retrying once;
//   - follows redirects (at most kMaxRedirects), sending Authorization only to the endpoint's
//     own host, never to the object storage a blob is redirected to;
//   - retries interrupted transfers, 5xx, 429 and timeouts with jittered exponential backoff,
//     honouring Retry-After, and resumes an interrupted blob with a Range request;
//   - on an endpoint with a plain http fallback (a loopback host written without a scheme; see
//     hosts.h), asks over https until a request finds the server does not speak TLS, then over
//     plain http for `plain_http_memory` (logged at debug: registry.plain_http_fallback), so
//     that not every request pays a failed TLS handshake; a certificate the client does not
//     trust is a TLS failure like any other, never a reason to use plain http;
//   - gives up on the endpoint at once on connection refused or a TLS failure, or when a
//     watchdog fires (no byte for progress_timeout, or slower than the throughput floor),
//     remembering it as dead for `dead_endpoint_memory` so each blob does not dial it again;
//     a blob then continues on the next endpoint from the bytes already received (Range).
// A 404 moves on to the next endpoint; only when every endpoint has failed does the request fail,
// with the most telling error (auth > data loss > not found > the rest) naming what was tried. An
// endpoint that failed while another is left to try is logged (registry.endpoint_failed), since
// the request may yet succeed and its error would otherwise be lost.
//
// At debug level it logs every HTTP exchange (registry.request: method, URL with its query
// redacted, status or error, body bytes, milliseconds), every retry (registry.retry: reason and
// wait), endpoints given up on (registry.endpoint_dead) and those tried last because they failed
// recently (registry.endpoint_deferred). Credentials never reach these lines.
//
// Peers. A blob (FetchBlob, FetchSmallBlob: layers and configs, never manifests, which always
// come from the registry since tags move) is asked first of the peers Session::blob_peers names
// for its digest (its home peers, in order), then of the registry's endpoints, in one walk: a
// peer is one more endpoint in front, with these differences. A peer is sent no credentials of
// its own (no Authorization, no answer to a 401); over https it is passed the registry's
// Authorization for the blob in kRegistryAuthorizationHeader, for a home peer to fetch the
// blob from the registry with it if it lacks it,
// is asked once (no retries), and a peer that answers 404, refuses, errors, stalls or trickles
// (the watchdogs) is given up on for that blob: logged at info (peers.peer_given_up: peer,
// blob, reason, never credentials) and reported to the observer, and the walk goes on,
// resuming from the bytes received — unless the sink refused the peer's bytes as they came
// (an error of its Write, such as the unpacker's decoder finding they are not the blob's
// format) or the peer sent more or fewer than the blob has: then every byte held is dropped
// (kBadBytes) and the next endpoint sends the blob whole. Bytes a peer wrote, and those a
// resumed download held when
// peers are asked (an earlier pull's), are checked against the blob's digest
// (BlobSink::digest) once the blob is complete, whichever endpoint completed it: a mismatch
// drops every byte held, gives up on the peer that wrote them (kBadBytes), and the blob is
// fetched whole from the next endpoint (or again from the endpoint that completed it). So a
// bad peer can slow a pull, never corrupt or fail it.
//
// An optional RegistryObserver (observer.h) hears each exchange's end (host, status, bytes),
// each retry and its reason, each move to the next endpoint, each endpoint given up on, the
// bytes of each blob by source (peer or registry) and each peer given up on.
//
// Thread safety: Client is safe for concurrent use by many pulls.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/cancel.h"
#include "berth/base/result.h"
#include "berth/digest/digest.h"
#include "berth/image/descriptor.h"
#include "berth/image/manifest.h"
#include "berth/registry/auth.h"
#include "berth/registry/hosts.h"
#include "berth/registry/http.h"
#include "berth/registry/observer.h"
#include "berth/registry/url.h"

namespace berth::registry {

struct RetryPolicy {
  int max_attempts = 4;  // per endpoint and request
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{5000};
  std::chrono::seconds max_retry_after{60};  // longer Retry-After values are capped to this
  std::chrono::seconds dead_endpoint_memory{30};
  // How long an endpoint that fell back to plain http (PlainHttpFallback) is asked over http
  // directly, without a TLS attempt; after that one https attempt checks again.
  std::chrono::seconds plain_http_memory{std::chrono::minutes(10)};
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(30)};
  // The watchdogs of every request (see HttpRequest): no byte for progress_timeout, or less
  // than min_bytes_per_second over min_speed_window, gives up on that endpoint at once (it is
  // remembered as dead, like a refused connection) and the request moves on to the next one,
  // resuming a blob from the bytes already received. Zero disables each.
  std::chrono::milliseconds progress_timeout{std::chrono::minutes(5)};
  uint64_t min_bytes_per_second = 0;
  std::chrono::milliseconds min_speed_window{std::chrono::seconds(30)};
};

inline constexpr int kMaxRedirects = 5;

// What a pull needs to talk to one repository.
struct Session {
  std::vector<RegistryEndpoint> endpoints;
  std::string repository;  // "library/busybox"
  Authorizer* authorizer = nullptr;
  // TLS for hosts that are not endpoints (redirect targets).
  std::function<TlsOptions(std::string_view host)> tls_for_host;
  // The peers to ask for the blob `digest` before `endpoints`, in order (RegistryEndpoint::
  // is_peer set); null or empty for none. Never asked for manifests.
  std::function<std::vector<RegistryEndpoint>(const Digest& digest)> blob_peers;
};

struct FetchedManifest {
  image::Descriptor descriptor;  // media type, digest (verified), size
  std::string bytes;
  std::string endpoint;  // base URL that served it
};

// Where a blob's bytes go (content::Writer has this shape; the caller adapts it).
class BlobSink {
 public:
  virtual ~BlobSink() = default;
  // Bytes already held (a resumed download continues from here with a Range request).
  virtual int64_t offset() const = 0;
  virtual Result<void> Write(std::string_view chunk) = 0;
  // Drops what was held, for a server that answers a Range request with the whole blob.
  virtual Result<void> Truncate() = 0;
  // The digest of the bytes held, [0, offset()), for checking a peer's bytes before the commit.
  virtual Digest digest() const = 0;
  // Called before each endpoint is asked: whether the bytes that follow come from a peer.
  virtual void FromPeer(bool /*peer*/) {}
};

// The request header a peer asked for a blob over https is sent the registry's Authorization
// in (the registry being the last endpoint of the session that is not a mirror), so that a home
// peer lacking the blob can fetch it from the registry with the requester's rights
// (peers/arriving_blob.h). Never sent over plain http; never logged.
inline constexpr std::string_view kRegistryAuthorizationHeader = "Berth-Registry-Authorization";

// The Accept header for manifests, in order of preference.
std::string ManifestAcceptHeader();

class Client {
 public:
  // `transport` and `observer` (may be null) must outlive the Client.
  explicit Client(HttpTransport& transport, RetryPolicy policy = {},
                  RegistryObserver* observer = nullptr);

  // Resolves a tag (`reference` = "v1.2") or digest ("sha256:…") to its manifest, on endpoints
  // with the resolve capability (or pull, for digests). Verifies the bytes against the digest
  // asked for, or against Docker-Content-Digest when the registry sends one.
  Result<FetchedManifest> Resolve(const Session& session, std::string_view reference,
                                  const CancelToken& cancel);

  // Fetches a manifest or index named by `descriptor`, verifying size and digest.
  Result<FetchedManifest> FetchManifest(const Session& session, const image::Descriptor& descriptor,
                                        const CancelToken& cancel);

  // Fetches a small blob (an image config) into memory, verifying size and digest.
  Result<std::string> FetchSmallBlob(const Session& session, const image::Descriptor& descriptor,
                                     size_t max_bytes, const CancelToken& cancel);

  // Streams the blob named by `descriptor` into `sink`, resuming from sink.offset(). Checks the
  // byte count (unless descriptor.size is -1: unknown, as for schema1 layers); the sink (the
  // content writer) checks the digest on commit. Returns the base URL of the endpoint that
  // served it.
  Result<std::string> FetchBlob(const Session& session, const image::Descriptor& descriptor,
                                BlobSink& sink, const CancelToken& cancel);

 private:
  // One GET as Exchange() runs it.
  struct ExchangeSpec {
    std::string path;   // relative to the endpoint's base URL: "/library/app/manifests/v1"
    std::string scope;  // the token scope it needs: "repository:library/app:pull"
    HeaderList extra_headers;
    // When given, a 2xx body streams into it, resuming from blob->offset() with a Range
    // request; else the body is buffered into the response, at most `max_body` bytes.
    BlobSink* blob = nullptr;
    size_t max_body = 4 << 20;
    FetchKind kind = FetchKind::kManifest;  // for the observer
  };
  class RangeResume;

  // Adds what authorizes a request to `endpoint` over `scheme` needing `scope` to `headers`:
  // the endpoint's own Authorization, which goes only to the endpoint it was issued for (never
  // to a redirect target); for a peer, which gets no Authorization of its own, the registry's
  // under kRegistryAuthorizationHeader, over https only.
  Result<void> AddAuthorization(const Session& session, const RegistryEndpoint& endpoint,
                                std::string_view scheme, std::string_view scope,
                                HeaderList& headers, const CancelToken& cancel);
  // Runs `spec` on `endpoint` under the retry policy: retries interrupted transfers, 5xx and
  // 429 with backoff (honouring Retry-After), answers one 401 through the Authorizer, and
  // remembers the endpoint as dead when it gives up on it (kUnavailable from the transport, or
  // every attempt used). Returns the final response (any status but 429 and 5xx), or the error.
  Result<HttpResponse> Exchange(const Session& session, const RegistryEndpoint& endpoint,
                                const ExchangeSpec& spec, const CancelToken& cancel);

  // What the transport made of one attempt: its final response or its error, for the retry
  // policy to judge.
  struct Attempt {
    Result<HttpResponse> response;
  };

  // Sends one GET of `url` for `endpoint` and follows redirects (at most kMaxRedirects), with
  // Authorization only for the endpoint's own scheme and host. An error stops the request at
  // once (no credentials, a bad Location); an Attempt may still hold the transport's error.
  Result<Attempt> GetFollowingRedirects(const Session& session, const RegistryEndpoint& endpoint,
                                        Url url, const ExchangeSpec& spec,
                                        const CancelToken& cancel);

  // A request for `url` with the policy's timeouts and watchdogs.
  HttpRequest NewRequest(const Url& url, const HeaderList& headers, size_t max_body) const;

  // Tries `request` on every suitable endpoint of `endpoints` in turn.
  template <typename T>
  Result<T> OnEndpoints(std::span<const RegistryEndpoint> endpoints, Capability capability,
                        std::string_view what,
                        const std::function<Result<T>(const RegistryEndpoint&)>& request);

  // One exchange of a blob with `endpoint`: the bytes from sink.offset() to the end (none when
  // the sink already holds descriptor.size bytes). kDataLoss when the blob ends short.
  Result<void> FetchRestOfBlob(const Session& session, const RegistryEndpoint& endpoint,
                               const image::Descriptor& descriptor, BlobSink& sink,
                               const CancelToken& cancel);

  // Logs (info) and reports that `peer` was given up on for `what` (a blob) because of `error`.
  void GiveUpOnPeer(std::string_view peer, std::string_view what, const Error& error);

  // Logs (debug) a retry of `url`: the attempt about to start, why, and how long it waits.
  void LogRetry(const Url& url, int next_attempt, const Error& reason,
                std::chrono::milliseconds wait, std::string_view why) const;
  // Tells the observer, if any, that a request to `host` is retried for `reason`.
  void ReportRetry(const std::string& host, RetryReason reason) const;

  // Whether `host` (an endpoint's) answered an https attempt as a plain http server within the
  // last plain_http_memory; RememberPlainHttp records that, and logs it (debug).
  bool SpeaksPlainHttp(const std::string& host);
  void RememberPlainHttp(const RegistryEndpoint& endpoint, const Error& https_failure);
  // The endpoint's base URL as it is reached now: http:// for one that fell back to plain http,
  // for errors and for the `endpoint` a fetch reports.
  std::string BaseUrlOf(const RegistryEndpoint& endpoint);

  bool IsDead(const std::string& host);
  void MarkDead(const std::string& host);
  Result<void> SleepFor(std::chrono::milliseconds duration, const CancelToken& cancel);

  HttpTransport& transport_;
  RetryPolicy policy_;
  RegistryObserver* const observer_;
  std::mutex mutex_;
  std::map<std::string, std::chrono::steady_clock::time_point> dead_until_;
  std::map<std::string, std::chrono::steady_clock::time_point> plain_http_until_;
};

}  // namespace berth::registry
