#include "berth/registry/client.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "berth/base/log.h"
#include "berth/image/media_types.h"
#include "berth/image/schema1.h"
#include "berth/registry/url.h"

namespace berth::registry {
namespace {

bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// The registry's own explanation from an error body ({"errors":[{"code","message"}]}), short.
std::string RegistryMessage(const HttpResponse& response) {
  auto parsed = nlohmann::json::parse(response.body, nullptr, false);
  std::string out;
  if (parsed.is_object()) {
    auto errors = parsed.find("errors");
    if (errors != parsed.end() && errors->is_array()) {
      for (const auto& error : *errors) {
        if (!error.is_object()) continue;
        std::string code = error.value("code", "");
        std::string message = error.value("message", "");
        if (!out.empty()) out += "; ";
        out += code.empty() ? message : code;
        if (!code.empty() && !message.empty()) out.append(": ").append(message);
      }
    }
  }
  if (out.size() > 300) out = out.substr(0, 300) + "…";
  return out;
}

Error HttpStatusError(const HttpResponse& response, std::string_view what,
                      const std::string& endpoint) {
  std::string detail = RegistryMessage(response);
  std::string message = fmt::format("{} at {}: HTTP {}{}", what, endpoint, response.status,
                                    detail.empty() ? "" : " (" + detail + ")");
  ErrorCode code = ErrorCode::kUnavailable;
  switch (response.status) {
    case 400:
      code = ErrorCode::kInvalidArgument;
      break;
    case 401:
      code = ErrorCode::kUnauthenticated;
      break;
    case 403:
      code = ErrorCode::kPermissionDenied;
      break;
    case 404:
      code = ErrorCode::kNotFound;
      break;
    case 416:
      code = ErrorCode::kOutOfRange;
      break;
    default:
      break;
  }
  return Error(code, std::move(message));
}

// Seconds from a Retry-After header (delta-seconds form; the HTTP-date form is rare for
// registries and is treated as absent).
std::optional<std::chrono::seconds> RetryAfter(const HttpResponse& response) {
  std::optional<std::string> value = response.Header("retry-after");
  if (!value || value->empty() || value->size() > 9) return std::nullopt;
  for (char c : *value) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  return std::chrono::seconds(std::stoll(*value));
}

// Priority of an endpoint's failure when choosing which one to report.
int ReportPriority(ErrorCode code) {
  switch (code) {
    case ErrorCode::kUnauthenticated:
    case ErrorCode::kPermissionDenied:
      return 3;
    case ErrorCode::kDataLoss:
      return 2;
    case ErrorCode::kNotFound:
      return 1;
    default:
      return 0;
  }
}

// Errors that end the whole request instead of moving on to the next endpoint. Only
// cancellation ends it on a peer's: whatever else a peer did, the registry may still serve the
// blob (a full disk fails there again, and stops the request then).
bool StopsAllEndpoints(const RegistryEndpoint& endpoint, ErrorCode code) {
  if (endpoint.is_peer) return code == ErrorCode::kCancelled;
  return code == ErrorCode::kCancelled || code == ErrorCode::kResourceExhausted ||
         code == ErrorCode::kInternal;
}

PeerFailure PeerFailureOf(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNotFound:
      return PeerFailure::kNotFound;
    case ErrorCode::kUnavailable:
    case ErrorCode::kDeadlineExceeded:
    case ErrorCode::kAborted:
      return PeerFailure::kUnavailable;
    case ErrorCode::kDataLoss:
    case ErrorCode::kOutOfRange:
      return PeerFailure::kBadBytes;
    default:
      return PeerFailure::kError;
  }
}

// Whether a request that failed with `code` after a peer wrote bytes failed on those bytes: the
// sink refused them as they came (the unpacker's decoder found they are not the blob's format)
// or the peer sent more or fewer than the blob has. Not a transport failure (interrupted,
// refused, stalled), after which what arrived may well be right and is checked at the end.
bool RefusedBytes(ErrorCode code) {
  return code == ErrorCode::kInvalidArgument || code == ErrorCode::kDataLoss ||
         code == ErrorCode::kUnimplemented || code == ErrorCode::kOutOfRange;
}

// The endpoints to ask for the blob `digest`: its peers, then the registry's.
std::vector<RegistryEndpoint> BlobEndpoints(const Session& session, const Digest& digest) {
  std::vector<RegistryEndpoint> endpoints;
  if (session.blob_peers) endpoints = session.blob_peers(digest);
  endpoints.insert(endpoints.end(), session.endpoints.begin(), session.endpoints.end());
  return endpoints;
}

Result<Digest> VerifyBytes(std::string_view bytes, const Digest& expected, std::string_view what,
                           const std::string& endpoint) {
  Hasher hasher(expected.algorithm());
  hasher.Update(bytes);
  Digest actual = hasher.Finish();
  if (actual != expected) {
    return Fail(ErrorCode::kDataLoss,
                fmt::format("{} from {} does not match its digest: expected {}, got {}", what,
                            endpoint, expected, actual));
  }
  return actual;
}

// A URL as the debug log shows it: the query (where signed URLs carry their signatures) is
// replaced by <redacted>.
std::string UrlForLog(std::string_view url) {
  size_t question = url.find('?');
  if (question == std::string_view::npos) return std::string(url);
  return fmt::format("{}?{}", url.substr(0, question), kRedacted);
}

// One line per HTTP exchange at debug level: method, URL, status (or the transport's error),
// body bytes received and how long it took.
void LogExchange(const HttpRequest& request, const Result<HttpResponse>& response, uint64_t bytes,
                 std::chrono::steady_clock::time_point started) {
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  if (response) {
    log::Debug("registry.request", {{"method", request.method},
                                    {"url", UrlForLog(request.url)},
                                    {"status", response->status},
                                    {"bytes", bytes},
                                    {"ms", elapsed.count()}});
  } else {
    log::Debug("registry.request", {{"method", request.method},
                                    {"url", UrlForLog(request.url)},
                                    {"code", ErrorCodeName(response.error().code())},
                                    {"error", response.error().message()},
                                    {"bytes", bytes},
                                    {"ms", elapsed.count()}});
  }
}

// The token scope every request of a pull needs.
std::string PullScope(const Session& session) {
  return "repository:" + session.repository + ":pull";
}

}  // namespace

std::string ManifestAcceptHeader() {
  return fmt::format("{}, {}, {}, {}, {}, {};q=0.5", media_types::kOciIndex,
                     media_types::kDockerManifestList, media_types::kOciManifest,
                     media_types::kDockerManifest, media_types::kDockerSchema1SignedManifest,
                     media_types::kDockerSchema1Manifest);
}

Client::Client(HttpTransport& transport, RetryPolicy policy, RegistryObserver* observer)
    : transport_(transport), policy_(policy), observer_(observer) {}

bool Client::IsDead(const std::string& host) {
  std::lock_guard lock(mutex_);
  auto it = dead_until_.find(host);
  if (it == dead_until_.end()) return false;
  if (std::chrono::steady_clock::now() >= it->second) {
    dead_until_.erase(it);
    return false;
  }
  return true;
}

void Client::MarkDead(const std::string& host) {
  log::Debug("registry.endpoint_dead",
             {{"host", host}, {"skip_first_for_s", policy_.dead_endpoint_memory.count()}});
  if (observer_ != nullptr) observer_->EndpointDead(host);
  std::lock_guard lock(mutex_);
  dead_until_[host] = std::chrono::steady_clock::now() + policy_.dead_endpoint_memory;
}

bool Client::SpeaksPlainHttp(const std::string& host) {
  std::lock_guard lock(mutex_);
  auto it = plain_http_until_.find(host);
  if (it == plain_http_until_.end()) return false;
  if (std::chrono::steady_clock::now() >= it->second) {
    plain_http_until_.erase(it);
    return false;
  }
  return true;
}

void Client::RememberPlainHttp(const RegistryEndpoint& endpoint, const Error& https_failure) {
  log::Debug("registry.plain_http_fallback",
             {{"host", endpoint.host},
              {"endpoint", endpoint.BaseUrl()},
              {"https_error", https_failure.message()},
              {"plain_http_for_s", policy_.plain_http_memory.count()}});
  std::lock_guard lock(mutex_);
  plain_http_until_[endpoint.host] = std::chrono::steady_clock::now() + policy_.plain_http_memory;
}

std::string Client::BaseUrlOf(const RegistryEndpoint& endpoint) {
  if (endpoint.plain_http_fallback == PlainHttpFallback::kNever || endpoint.scheme != "https" ||
      !SpeaksPlainHttp(endpoint.host)) {
    return endpoint.BaseUrl();
  }
  return "http://" + endpoint.host + endpoint.path;
}

void Client::LogRetry(const Url& url, int next_attempt, const Error& reason,
                      std::chrono::milliseconds wait, std::string_view why) const {
  log::Debug("registry.retry", {{"url", UrlForLog(url.ToString())},
                                {"attempt", next_attempt},
                                {"max_attempts", policy_.max_attempts},
                                {"wait_ms", wait.count()},
                                {"wait", why},
                                {"reason", reason.message()}});
}

Result<void> Client::SleepFor(std::chrono::milliseconds duration, const CancelToken& cancel) {
  auto until = std::chrono::steady_clock::now() + duration;
  while (std::chrono::steady_clock::now() < until) {
    BERTH_RETURN_IF_ERROR(cancel.Check());
    auto step = std::min<std::chrono::steady_clock::duration>(
        std::chrono::milliseconds(50), until - std::chrono::steady_clock::now());
    std::this_thread::sleep_for(step);
  }
  return cancel.Check();
}

HttpRequest Client::NewRequest(const Url& url, const HeaderList& headers, size_t max_body) const {
  HttpRequest request;
  request.url = url.ToString();
  request.headers = headers;
  request.connect_timeout = policy_.connect_timeout;
  request.progress_timeout = policy_.progress_timeout;
  request.min_bytes_per_second = policy_.min_bytes_per_second;
  request.min_speed_window = policy_.min_speed_window;
  request.max_buffered_body = max_body;
  return request;
}

// Resumes a blob from the bytes its sink already holds: the request asks for the rest with a
// Range header, and the first chunk of the answer shows whether the server honoured it (206 with
// the Content-Range asked for), sent the whole blob (the sink starts over) or sent another range
// (kDataLoss). One RangeResume serves one exchange.
class Client::RangeResume {
 public:
  explicit RangeResume(BlobSink& blob) : blob_(blob), offset_(blob.offset()) {}

  // Adds the Range header when bytes are already held.
  void AddRangeHeader(HeaderList& headers) const {
    if (offset_ > 0) headers.emplace_back("Range", fmt::format("bytes={}-", offset_));
  }

  // Body bytes written to the blob in this exchange.
  uint64_t bytes_written() const { return bytes_written_; }

  // The transport's sink for this exchange. REQUIRES: `this` outlives the exchange.
  BodySink Sink() {
    return [this](const HttpResponse& head, std::string_view chunk) { return Accept(head, chunk); };
  }

 private:
  Result<void> Accept(const HttpResponse& head, std::string_view chunk) {
    if (first_chunk_) {
      first_chunk_ = false;
      BERTH_RETURN_IF_ERROR(CheckRange(head));
    }
    bytes_written_ += chunk.size();
    return blob_.Write(chunk);
  }

  Result<void> CheckRange(const HttpResponse& head) {
    if (offset_ == 0) return Ok();
    if (head.status != 206) return blob_.Truncate();  // the server ignored the Range
    std::string expected = fmt::format("bytes {}-", offset_);
    std::optional<std::string> range = head.Header("content-range");
    if (!range || !range->starts_with(expected)) {
      return Fail(ErrorCode::kDataLoss,
                  fmt::format("server answered a Range request for offset {} with "
                              "Content-Range \"{}\"",
                              offset_, range.value_or("")));
    }
    return Ok();
  }

  BlobSink& blob_;
  const int64_t offset_;
  bool first_chunk_ = true;
  uint64_t bytes_written_ = 0;
};

Result<Client::Attempt> Client::GetFollowingRedirects(const Session& session,
                                                      const RegistryEndpoint& endpoint, Url url,
                                                      const ExchangeSpec& spec,
                                                      const CancelToken& cancel) {
  HeaderList headers = endpoint.headers;
  headers.insert(headers.end(), spec.extra_headers.begin(), spec.extra_headers.end());
  // An endpoint found to speak plain http is asked over http at once, without a TLS attempt.
  std::string endpoint_scheme = endpoint.scheme;
  if (endpoint.plain_http_fallback != PlainHttpFallback::kNever && SpeaksPlainHttp(endpoint.host)) {
    endpoint_scheme = "http";
    if (url.host == endpoint.host) url.scheme = "http";
  }
  for (int redirects = 0;; ++redirects) {
    HttpRequest request = NewRequest(url, headers, spec.max_body);
    bool endpoint_host = url.host == endpoint.host && url.scheme == endpoint_scheme;
    request.tls = endpoint_host
                      ? endpoint.tls
                      : (session.tls_for_host ? session.tls_for_host(url.host) : TlsOptions{});
    if (endpoint_host && url.scheme == "https") {
      request.plain_http_fallback = endpoint.plain_http_fallback;
    }
    if (endpoint_host) {
      BERTH_RETURN_IF_ERROR(
          AddAuthorization(session, endpoint, url.scheme, spec.scope, request.headers, cancel));
    }
    std::optional<RangeResume> resume;
    BodySink sink;
    if (spec.blob != nullptr) {
      resume.emplace(*spec.blob);
      resume->AddRangeHeader(request.headers);
      sink = resume->Sink();
    }
    const auto started = std::chrono::steady_clock::now();
    Result<HttpResponse> response =
        transport_.RoundTrip(request, spec.blob != nullptr ? &sink : nullptr, cancel);
    if (response && response->https_failure) {
      // The https attempt showed a plain http server; the response is from http://.
      RememberPlainHttp(endpoint, *response->https_failure);
      url.scheme = endpoint_scheme = "http";
      request.url = url.ToString();
    }
    const uint64_t received =
        resume ? resume->bytes_written() : (response ? response->body.size() : 0);
    LogExchange(request, response, received, started);
    if (!response || !IsRedirect(response->status)) {
      if (observer_ != nullptr) {
        observer_->RequestDone(endpoint.host, spec.kind, response ? response->status : 0, received);
        if (spec.kind != FetchKind::kManifest && received > 0) {
          observer_->BlobBytes(endpoint.is_peer ? BlobSource::kPeer : BlobSource::kRegistry,
                               endpoint.host, received);
        }
      }
      return Attempt{std::move(response)};
    }
    std::optional<std::string> location = response->Header("location");
    if (!location) return Attempt{std::move(response)};
    if (redirects >= kMaxRedirects) {
      return Attempt{Fail(ErrorCode::kUnavailable,
                          fmt::format("GET {}{}: more than {} redirects", BaseUrlOf(endpoint),
                                      spec.path, kMaxRedirects))};
    }
    BERTH_ASSIGN_OR_RETURN(url, ResolveLocation(url, *location));
  }
}

Result<void> Client::AddAuthorization(const Session& session, const RegistryEndpoint& endpoint,
                                      std::string_view scheme, std::string_view scope,
                                      HeaderList& headers, const CancelToken& cancel) {
  if (session.authorizer == nullptr) return Ok();
  if (!endpoint.is_peer) {
    BERTH_ASSIGN_OR_RETURN(std::optional<Secret> authorization,
                           session.authorizer->Authorization(endpoint.host, scope, cancel));
    if (authorization) headers.emplace_back("Authorization", authorization->reveal());
    return Ok();
  }
  // A peer is sent the registry's authorization for the blob, and only over https: a home peer
  // that lacks the blob fetches it with it.
  const auto registry = std::find_if(session.endpoints.rbegin(), session.endpoints.rend(),
                                     [](const RegistryEndpoint& e) { return !e.is_mirror; });
  if (scheme != "https" || registry == session.endpoints.rend()) return Ok();
  Result<std::optional<Secret>> authorization =
      session.authorizer->Authorization(registry->host, scope, cancel);
  if (authorization && *authorization) {
    headers.emplace_back(std::string(kRegistryAuthorizationHeader), (*authorization)->reveal());
  }
  return Ok();  // a peer is asked without, rather than not at all
}

Result<HttpResponse> Client::Exchange(const Session& session, const RegistryEndpoint& endpoint,
                                      const ExchangeSpec& spec, const CancelToken& cancel) {
  const std::string base_url = BaseUrlOf(endpoint);
  // A peer is asked once: when it fails, the next peer or the registry is the retry.
  const int max_attempts = endpoint.is_peer ? 1 : policy_.max_attempts;
  thread_local std::mt19937 random(std::random_device{}());
  std::chrono::milliseconds backoff = policy_.initial_backoff;
  std::optional<Error> last_error;
  bool auth_retried = false;
  int attempt = 1;
  int loops_left = 100;  // bounds retries that make progress (each resumes further on)
  RetryReason retry_reason = RetryReason::kStatus;

  while (attempt <= max_attempts && loops_left-- > 0) {
    BERTH_RETURN_IF_ERROR(cancel.Check());
    BERTH_ASSIGN_OR_RETURN(Url url, ParseUrl(endpoint.UrlFor(spec.path)));
    const int64_t offset_before = spec.blob != nullptr ? spec.blob->offset() : 0;
    BERTH_ASSIGN_OR_RETURN(Attempt attempted,
                           GetFollowingRedirects(session, endpoint, url, spec, cancel));
    Result<HttpResponse>& response = attempted.response;

    if (!response) {
      Error error = std::move(response).error();
      ErrorCode code = error.code();
      if (code == ErrorCode::kUnavailable) {
        // Refused, unreachable, TLS, or stalled / too slow (a watchdog): do not dial it again
        // for a while; the next endpoint resumes from what was received.
        MarkDead(endpoint.host);
        return Fail(std::move(error));
      }
      if (cancel.cancelled() ||
          (code != ErrorCode::kAborted && code != ErrorCode::kDeadlineExceeded)) {
        return Fail(std::move(error));  // cancelled, or the sink's own error (disk full, …)
      }
      retry_reason =
          code == ErrorCode::kDeadlineExceeded ? RetryReason::kTimeout : RetryReason::kInterrupted;
      last_error = std::move(error);
    } else {
      int status = response->status;
      if (status == 401 && auth_retried) {
        // The retry carried what the challenge asked for: say whose credentials were refused.
        return Fail(session.authorizer->Refused(endpoint.host, spec.scope, *response));
      }
      if (status == 401 && session.authorizer != nullptr && !endpoint.is_peer) {
        BERTH_RETURN_IF_ERROR(
            session.authorizer->OnUnauthorized(endpoint.host, spec.scope, *response, cancel));
        auth_retried = true;
        continue;
      }
      if (status != 429 && status < 500) return response;
      last_error = HttpStatusError(*response, fmt::format("GET {}", spec.path), base_url);
      retry_reason = RetryReason::kStatus;
      if (status == 429 || status == 503) {
        if (std::optional<std::chrono::seconds> wait = RetryAfter(*response);
            wait && attempt < max_attempts) {
          std::chrono::milliseconds capped = std::min(*wait, policy_.max_retry_after);
          LogRetry(url, attempt + 1, *last_error, capped, "Retry-After");
          ReportRetry(endpoint.host, RetryReason::kRetryAfter);
          BERTH_RETURN_IF_ERROR(SleepFor(capped, cancel));
          ++attempt;
          continue;
        }
      }
    }
    // A transfer that moved forward before breaking off does not use up an attempt: the next
    // one resumes where it stopped. Not on a peer, which is asked once: the next endpoint
    // resumes instead.
    bool progressed = spec.blob != nullptr && spec.blob->offset() > offset_before;
    if (!progressed || endpoint.is_peer) ++attempt;
    if (attempt > max_attempts) break;
    std::uniform_int_distribution<int64_t> jitter(backoff.count() / 2, backoff.count());
    std::chrono::milliseconds wait(jitter(random));
    LogRetry(url, attempt, *last_error, wait, progressed ? "resume" : "backoff");
    ReportRetry(endpoint.host, retry_reason);
    BERTH_RETURN_IF_ERROR(SleepFor(wait, cancel));
    backoff = std::min(backoff * 2, policy_.max_backoff);
  }
  MarkDead(endpoint.host);
  Error error = last_error ? *last_error : Error(ErrorCode::kUnavailable, "no attempt made");
  return Fail(std::move(error).WithContext(
      fmt::format("giving up on {} after {} attempts", base_url, max_attempts)));
}

void Client::ReportRetry(const std::string& host, RetryReason reason) const {
  if (observer_ != nullptr) observer_->Retried(host, reason);
}

void Client::GiveUpOnPeer(std::string_view peer, std::string_view what, const Error& error) {
  const PeerFailure reason = PeerFailureOf(error.code());
  log::Info("peers.peer_given_up", {{"peer", peer},
                                    {"what", what},
                                    {"reason", PeerFailureName(reason)},
                                    {"error", error.ToString()}});
  if (observer_ != nullptr) observer_->PeerGivenUp(peer, reason);
}

template <typename T>
Result<T> Client::OnEndpoints(std::span<const RegistryEndpoint> endpoints, Capability capability,
                              std::string_view what,
                              const std::function<Result<T>(const RegistryEndpoint&)>& request) {
  std::vector<const RegistryEndpoint*> alive;
  std::vector<const RegistryEndpoint*> dead;
  for (const RegistryEndpoint& endpoint : endpoints) {
    if (!endpoint.Can(capability)) continue;
    if (IsDead(endpoint.host)) {
      log::Debug("registry.endpoint_deferred", {{"what", what},
                                                {"endpoint", endpoint.BaseUrl()},
                                                {"why", "failed recently; tried last"}});
      dead.push_back(&endpoint);
    } else {
      alive.push_back(&endpoint);
    }
  }
  alive.insert(alive.end(), dead.begin(), dead.end());
  if (alive.empty()) {
    return Fail(ErrorCode::kFailedPrecondition,
                fmt::format("{}: no configured endpoint may {} (check the hosts' capabilities)",
                            what, capability == kCapabilityResolve ? "resolve tags" : "pull"));
  }
  std::optional<Error> reported;
  int reported_priority = 0;
  std::string tried;
  for (size_t i = 0; i < alive.size(); ++i) {
    const RegistryEndpoint* endpoint = alive[i];
    Result<T> result = request(*endpoint);
    if (result) return result;
    Error error = std::move(result).error();
    if (StopsAllEndpoints(*endpoint, error.code()))
      return Fail(std::move(error).WithContext(std::string(what)));
    if (endpoint->is_peer) {
      GiveUpOnPeer(endpoint->host, what, error);
    } else if (i + 1 < alive.size()) {
      if (observer_ != nullptr) observer_->FellBack(endpoint->host);
      log::Warn("registry.endpoint_failed", {{"what", what},
                                             {"endpoint", endpoint->BaseUrl()},
                                             {"next", alive[i + 1]->BaseUrl()},
                                             {"code", ErrorCodeName(error.code())},
                                             {"error", error.ToString()}});
    }
    if (!tried.empty()) tried += "; ";
    tried += fmt::format("{}: {}", endpoint->BaseUrl(), ErrorCodeName(error.code()));
    // What the registry said is worth more than what a peer said.
    const int priority = endpoint->is_peer ? -1 : ReportPriority(error.code());
    if (!reported || priority >= reported_priority) {
      reported = std::move(error);
      reported_priority = priority;
    }
  }
  if (alive.size() > 1) {
    return Fail(std::move(*reported).WithContext(fmt::format("{} (tried {})", what, tried)));
  }
  return Fail(std::move(*reported).WithContext(std::string(what)));
}

Result<FetchedManifest> Client::Resolve(const Session& session, std::string_view reference,
                                        const CancelToken& cancel) {
  std::optional<Digest> pinned;
  if (reference.find(':') != std::string_view::npos) {
    BERTH_ASSIGN_OR_RETURN(pinned, Digest::Parse(reference));
  }
  const std::string path = fmt::format("/{}/manifests/{}", session.repository, reference);
  const HeaderList accept = {{"Accept", ManifestAcceptHeader()}};
  // "repo@sha256:…" for a digest, "repo:tag" for a tag.
  std::string what =
      fmt::format("resolve {}{}{}", session.repository, pinned ? "@" : ":", reference);
  return OnEndpoints<FetchedManifest>(
      session.endpoints, pinned ? kCapabilityPull : kCapabilityResolve, what,
      [&](const RegistryEndpoint& endpoint) -> Result<FetchedManifest> {
        BERTH_ASSIGN_OR_RETURN(HttpResponse response,
                               Exchange(session, endpoint,
                                        {.path = path,
                                         .scope = PullScope(session),
                                         .extra_headers = accept,
                                         .max_body = image::kMaxManifestBytes},
                                        cancel));
        if (response.status != 200) {
          return Fail(
              HttpStatusError(response, "manifest " + std::string(reference), BaseUrlOf(endpoint)));
        }
        BERTH_ASSIGN_OR_RETURN(
            image::ManifestKind kind,
            image::DetectKind(response.Header("content-type").value_or(""), response.body));
        FetchedManifest fetched;
        fetched.endpoint = BaseUrlOf(endpoint);
        fetched.descriptor.media_type = std::string(image::MediaTypeOf(kind));
        fetched.descriptor.size = static_cast<int64_t>(response.body.size());
        std::optional<Digest> expected = pinned;
        if (!expected) {
          if (auto header = response.Header("docker-content-digest")) {
            Result<Digest> parsed = Digest::Parse(*header);
            if (parsed) expected = *parsed;
          }
        }
        if (expected && kind == image::ManifestKind::kDockerSchema1 &&
            !VerifyBytes(response.body, *expected, "manifest", BaseUrlOf(endpoint))) {
          // A signed schema1 manifest is named by the digest of its payload without the
          // signatures; check that instead (and keep the signed bytes, which the converter reads).
          BERTH_ASSIGN_OR_RETURN(std::string payload, image::Schema1SignedPayload(response.body));
          BERTH_RETURN_IF_ERROR(
              VerifyBytes(payload, *expected, "schema1 manifest payload", BaseUrlOf(endpoint)));
          fetched.descriptor.digest = *expected;
        } else if (expected) {
          BERTH_ASSIGN_OR_RETURN(
              fetched.descriptor.digest,
              VerifyBytes(response.body, *expected, "manifest", BaseUrlOf(endpoint)));
        } else {
          fetched.descriptor.digest = Digest::Sha256Of(response.body);
        }
        fetched.bytes = std::move(response.body);
        return fetched;
      });
}

Result<FetchedManifest> Client::FetchManifest(const Session& session,
                                              const image::Descriptor& descriptor,
                                              const CancelToken& cancel) {
  if (descriptor.size > static_cast<int64_t>(image::kMaxManifestBytes)) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("manifest {} is {} bytes, over the {} byte limit", descriptor.digest,
                            descriptor.size, image::kMaxManifestBytes));
  }
  BERTH_ASSIGN_OR_RETURN(FetchedManifest fetched,
                         Resolve(session, descriptor.digest.ToString(), cancel));
  if (descriptor.size > 0 && fetched.descriptor.size != descriptor.size) {
    return Fail(
        ErrorCode::kDataLoss,
        fmt::format("manifest {} from {} is {} bytes, its descriptor says {}", descriptor.digest,
                    fetched.endpoint, fetched.descriptor.size, descriptor.size));
  }
  return fetched;
}

Result<std::string> Client::FetchSmallBlob(const Session& session,
                                           const image::Descriptor& descriptor, size_t max_bytes,
                                           const CancelToken& cancel) {
  if (descriptor.size > static_cast<int64_t>(max_bytes)) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("blob {} is {} bytes, over the {} byte limit", descriptor.digest,
                            descriptor.size, max_bytes));
  }
  const std::string path = fmt::format("/{}/blobs/{}", session.repository, descriptor.digest);
  return OnEndpoints<std::string>(
      BlobEndpoints(session, descriptor.digest), kCapabilityPull,
      fmt::format("fetch blob {}", descriptor.digest),
      [&](const RegistryEndpoint& endpoint) -> Result<std::string> {
        BERTH_ASSIGN_OR_RETURN(HttpResponse response, Exchange(session, endpoint,
                                                               {.path = path,
                                                                .scope = PullScope(session),
                                                                .max_body = max_bytes,
                                                                .kind = FetchKind::kConfig},
                                                               cancel));
        if (response.status != 200) {
          return Fail(HttpStatusError(response, "blob", BaseUrlOf(endpoint)));
        }
        if (static_cast<int64_t>(response.body.size()) != descriptor.size) {
          return Fail(
              ErrorCode::kDataLoss,
              fmt::format("blob {} from {} is {} bytes, its descriptor says {}", descriptor.digest,
                          BaseUrlOf(endpoint), response.body.size(), descriptor.size));
        }
        BERTH_RETURN_IF_ERROR(
            VerifyBytes(response.body, descriptor.digest, "blob", BaseUrlOf(endpoint)));
        return std::move(response.body);
      });
}

Result<void> Client::FetchRestOfBlob(const Session& session, const RegistryEndpoint& endpoint,
                                     const image::Descriptor& descriptor, BlobSink& sink,
                                     const CancelToken& cancel) {
  if (sink.offset() >= descriptor.size && descriptor.size > 0) return Ok();
  BERTH_ASSIGN_OR_RETURN(
      HttpResponse response,
      Exchange(session, endpoint,
               {.path = fmt::format("/{}/blobs/{}", session.repository, descriptor.digest),
                .scope = PullScope(session),
                .blob = &sink,
                .max_body = 64 << 10,
                .kind = media_types::IsConfig(descriptor.media_type) ? FetchKind::kConfig
                                                                     : FetchKind::kLayer},
               cancel));
  if (response.status != 200 && response.status != 206) {
    return Fail(HttpStatusError(response, "blob", BaseUrlOf(endpoint)));
  }
  if (descriptor.size >= 0 && sink.offset() != descriptor.size) {
    return Fail(
        ErrorCode::kDataLoss,
        fmt::format("blob {} from {} ended after {} bytes, its descriptor says {}",
                    descriptor.digest, BaseUrlOf(endpoint), sink.offset(), descriptor.size));
  }
  return Ok();
}

Result<std::string> Client::FetchBlob(const Session& session, const image::Descriptor& descriptor,
                                      BlobSink& sink, const CancelToken& cancel) {
  const std::string what = fmt::format("fetch blob {}", descriptor.digest);
  const std::vector<RegistryEndpoint> endpoints = BlobEndpoints(session, descriptor.digest);
  // Who wrote bytes the digest has not confirmed yet: the last peer that wrote into the sink,
  // or "" for bytes a resumed ingest held when peers are asked (an earlier pull's, which a
  // peer may have written).
  std::optional<std::string> unverified_from;
  if (endpoints.size() > session.endpoints.size() && sink.offset() > 0) unverified_from = "";
  return OnEndpoints<std::string>(
      endpoints, kCapabilityPull, what,
      [&](const RegistryEndpoint& endpoint) -> Result<std::string> {
        sink.FromPeer(endpoint.is_peer);
        for (;;) {
          const int64_t offset_before = sink.offset();
          Result<void> fetched = FetchRestOfBlob(session, endpoint, descriptor, sink, cancel);
          if (endpoint.is_peer && sink.offset() != offset_before) unverified_from = endpoint.host;
          if (!fetched && unverified_from == endpoint.host &&
              RefusedBytes(fetched.error().code())) {
            // None of what is held can be trusted: the next endpoint fetches the blob whole.
            unverified_from.reset();
            BERTH_RETURN_IF_ERROR(sink.Truncate());
            return Fail(ErrorCode::kDataLoss,
                        fmt::format("bytes of blob {} from peer {} were refused: {}",
                                    descriptor.digest, endpoint.host, fetched.error().message()));
          }
          BERTH_RETURN_IF_ERROR(fetched);
          if (!unverified_from) return BaseUrlOf(endpoint);
          const Digest held = sink.digest();
          if (held == descriptor.digest) return BaseUrlOf(endpoint);
          // Bytes of a peer's spoiled the blob: none of what is held can be trusted.
          const std::string from = *std::exchange(unverified_from, std::nullopt);
          Error mismatch(ErrorCode::kDataLoss,
                         fmt::format("blob {} with bytes from {} does not match its digest (got "
                                     "{}); fetching it whole again",
                                     descriptor.digest,
                                     from.empty() ? "an earlier pull" : "peer " + from, held));
          BERTH_RETURN_IF_ERROR(sink.Truncate());
          if (endpoint.is_peer && from == endpoint.host) {
            return Fail(std::move(mismatch));  // the walk gives up on this peer
          }
          if (!from.empty()) GiveUpOnPeer(from, what, mismatch);
          // Fetch it whole from `endpoint` (checked again if it is a peer).
        }
      });
}

}  // namespace berth::registry
