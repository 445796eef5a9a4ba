#include "berth/registry/client.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "berth/base/base64.h"
#include "berth/base/log.h"
#include "berth/image/media_types.h"
#include "berth/registry/fake_transport.h"

namespace berth::registry {
namespace {

constexpr char kManifest[] = R"({"schemaVersion":2,"config":{},"layers":[]})";

class StringSink final : public BlobSink {
 public:
  int64_t offset() const override { return static_cast<int64_t>(bytes.size()); }
  Result<void> Write(std::string_view chunk) override {
    bytes.append(chunk);
    // As the unpacker behind the content writer: the bytes are stored, then found wrong.
    if (refuse_first_byte && bytes.size() == chunk.size() && !chunk.empty() &&
        chunk.front() == *refuse_first_byte) {
      return Fail(ErrorCode::kInvalidArgument, "the layer is not in its media type's format");
    }
    return Ok();
  }
  Result<void> Truncate() override {
    bytes.clear();
    ++truncations;
    return Ok();
  }
  Digest digest() const override { return Digest::Sha256Of(bytes); }
  std::string bytes;
  int truncations = 0;
  // A blob starting with this byte is refused at its first Write.
  std::optional<char> refuse_first_byte;
};

class ClientTest : public ::testing::Test {
 protected:
  ClientTest()
      : authorizer_(
            transport_, [this](std::string_view) { return credentials_; },
            [](std::string_view) { return TlsOptions{}; }),
        client_(transport_, RetryPolicy{.max_attempts = 3,
                                        .initial_backoff = std::chrono::milliseconds(1),
                                        .max_backoff = std::chrono::milliseconds(2)}) {}

  Session MakeSession(std::vector<std::string> urls) {
    Session session;
    for (const std::string& url : urls) {
      RegistryEndpoint endpoint;
      endpoint.scheme = url.substr(0, url.find(':'));
      endpoint.host = url.substr(url.find("//") + 2);
      endpoint.path = "/v2";
      session.endpoints.push_back(endpoint);
    }
    session.repository = "library/app";
    session.authorizer = &authorizer_;
    return session;
  }

  static HttpResponse ManifestResponse() {
    return HttpResponse{
        .status = 200,
        .headers = {{"content-type", std::string(media_types::kOciManifest)},
                    {"docker-content-digest", Digest::Sha256Of(kManifest).ToString()}},
        .body = kManifest};
  }

  FakeTransport transport_;
  Credentials credentials_;
  Authorizer authorizer_;
  Client client_;
};

TEST_F(ClientTest, ResolveTagVerifiesDigestHeader) {
  transport_.Respond("GET", "http://r.test/v2/library/app/manifests/v1", ManifestResponse());
  Result<FetchedManifest> fetched =
      client_.Resolve(MakeSession({"http://r.test"}), "v1", CancelToken::Never());
  ASSERT_TRUE(fetched) << fetched.error().ToString();
  EXPECT_EQ(fetched->descriptor.digest, Digest::Sha256Of(kManifest));
  EXPECT_EQ(fetched->descriptor.media_type, media_types::kOciManifest);
  EXPECT_EQ(fetched->bytes, kManifest);
  auto requests = transport_.requests();
  ASSERT_EQ(requests.size(), 1u);
  bool has_accept = false;
  for (const auto& [name, value] : requests[0].headers) {
    if (name == "Accept") has_accept = value.find(media_types::kOciIndex) != std::string::npos;
  }
  EXPECT_TRUE(has_accept);
}

TEST_F(ClientTest, TamperedManifestIsDataLoss) {
  HttpResponse response = ManifestResponse();
  response.body[0] = ' ';
  transport_.Respond("GET", "http://r.test/v2/library/app/manifests/v1", response);
  auto fetched = client_.Resolve(MakeSession({"http://r.test"}), "v1", CancelToken::Never());
  ASSERT_FALSE(fetched);
  EXPECT_EQ(fetched.error().code(), ErrorCode::kDataLoss);
  EXPECT_NE(fetched.error().ToString().find("http://r.test/v2"), std::string::npos);
}

TEST_F(ClientTest, DeadMirrorThenNotFoundMirrorThenUpstream) {
  // mirror-a refuses connections (no rule), mirror-b has no such manifest, upstream has it.
  transport_.Respond("GET", "http://mirror-b.test/v2/", {.status = 404, .body = "{}"});
  transport_.Respond("GET", "http://up.test/v2/library/app/manifests/v1", ManifestResponse());
  Session session = MakeSession({"http://mirror-a.test", "http://mirror-b.test", "http://up.test"});
  auto fetched = client_.Resolve(session, "v1", CancelToken::Never());
  ASSERT_TRUE(fetched) << fetched.error().ToString();
  EXPECT_EQ(fetched->endpoint, "http://up.test/v2");
  // The dead mirror is remembered: the next request tries it last, not first.
  size_t before = transport_.requests().size();
  ASSERT_TRUE(client_.Resolve(session, "v1", CancelToken::Never()));
  auto requests = transport_.requests();
  EXPECT_EQ(requests[before].url.find("http://mirror-b.test"), 0u);
}

TEST_F(ClientTest, NotFoundEverywhereIsNotFound) {
  transport_.Respond(
      "GET", "http://a.test/v2/",
      {.status = 404, .body = R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]})"});
  auto fetched = client_.Resolve(MakeSession({"http://a.test"}), "v9", CancelToken::Never());
  ASSERT_FALSE(fetched);
  EXPECT_EQ(fetched.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(fetched.error().ToString().find("MANIFEST_UNKNOWN"), std::string::npos);
}

TEST_F(ClientTest, ServerErrorsAreRetried) {
  transport_.Respond("GET", "http://r.test/v2/library/app/manifests/v1", {.status = 500});
  transport_.Respond("GET", "http://r.test/v2/library/app/manifests/v1", ManifestResponse());
  auto fetched = client_.Resolve(MakeSession({"http://r.test"}), "v1", CancelToken::Never());
  ASSERT_TRUE(fetched) << fetched.error().ToString();
  EXPECT_EQ(transport_.requests().size(), 2u);
}

TEST_F(ClientTest, PersistentServerErrorGivesUp) {
  transport_.Respond("GET", "http://r.test/v2/", {.status = 503});
  auto fetched = client_.Resolve(MakeSession({"http://r.test"}), "v1", CancelToken::Never());
  ASSERT_FALSE(fetched);
  EXPECT_EQ(fetched.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(transport_.requests().size(), 3u);
}

TEST_F(ClientTest, BearerChallengeThenSuccess) {
  transport_.Respond(
      "GET", "http://r.test/v2/library/app/manifests/v1",
      {.status = 401,
       .headers = {{"www-authenticate", R"(Bearer realm="http://auth.test/token",service="r")"}}});
  transport_.Respond("GET", "http://r.test/v2/library/app/manifests/v1", ManifestResponse());
  transport_.Respond("GET", "http://auth.test/token", {.status = 200, .body = R"({"token":"T"})"});
  auto fetched = client_.Resolve(MakeSession({"http://r.test"}), "v1", CancelToken::Never());
  ASSERT_TRUE(fetched) << fetched.error().ToString();
  auto requests = transport_.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_NE(requests[1].url.find("scope=repository%3Alibrary%2Fapp%3Apull"), std::string::npos);
  bool bearer = false;
  for (const auto& [name, value] : requests[2].headers) bearer |= value == "Bearer T";
  EXPECT_TRUE(bearer);
}

TEST_F(ClientTest, MirrorRequestsCarryNsAndTheEndpointsOwnQuery) {
  Session session = MakeSession({"http://mirror.test", "http://up.test"});
  session.endpoints[0].mirror_of = "up.test";
  session.endpoints[0].query = "key=abc";
  transport_.Respond("GET", "http://mirror.test/v2/", {.status = 404, .body = "{}"});
  transport_.Respond("GET", "http://up.test/v2/library/app/manifests/v1", ManifestResponse());
  ASSERT_TRUE(client_.Resolve(session, "v1", CancelToken::Never()));
  auto requests = transport_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].url, "http://mirror.test/v2/library/app/manifests/v1?key=abc&ns=up.test");
  EXPECT_EQ(requests[1].url, "http://up.test/v2/library/app/manifests/v1");
}

TEST_F(ClientTest, RefusedBasicLoginNamesTheUserAndTheRealm) {
  credentials_ = {.username = "u", .password = Secret("pw-6b2a")};
  transport_.Respond("GET", "http://r.test/v2/library/app/manifests/v1",
                     {.status = 401, .headers = {{"www-authenticate", R"(Basic realm="R1")"}}});
  auto fetched = client_.Resolve(MakeSession({"http://r.test"}), "v1", CancelToken::Never());
  ASSERT_FALSE(fetched);
  EXPECT_EQ(fetched.error().code(), ErrorCode::kUnauthenticated);
  std::string text = fetched.error().ToString();
  EXPECT_NE(text.find(R"(registry r.test refused the credentials of user "u")"), std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(Basic realm="R1")"), std::string::npos) << text;
  EXPECT_EQ(text.find("pw-6b2a"), std::string::npos) << text;
  EXPECT_EQ(transport_.requests().size(), 2u);  // the first try, and one with the credentials
}

// Debug logs an operator can follow: one line per request and per retry, and the token fetch,
// with no credential in any of them.
TEST_F(ClientTest, DebugLogShowsRequestsRetriesAndTokensButNoSecret) {
  static std::ostringstream* captured = new std::ostringstream();  // outlives the log sink
  ASSERT_TRUE(log::Init({.level = log::Level::kDebug}));
  log::AddSinkForTest(std::make_shared<spdlog::sinks::ostream_sink_mt>(*captured));
  const std::string password = "pw-sentinel-51c7";
  const std::string token = "tok-sentinel-0a93";
  credentials_ = {.username = "u", .password = Secret(password)};
  const std::string manifest_url = "http://r.test/v2/library/app/manifests/v1";
  transport_.Respond(
      "GET", manifest_url,
      {.status = 401,
       .headers = {{"www-authenticate", R"(Bearer realm="http://auth.test/token",service="r")"}}});
  transport_.Respond("GET", manifest_url, {.status = 500});
  transport_.Respond("GET", manifest_url, ManifestResponse());
  transport_.Respond("GET", "http://auth.test/token",
                     {.status = 200, .body = R"({"token":")" + token + R"(","expires_in":300})"});
  Session session = MakeSession({"http://r.test"});
  session.endpoints[0].query = "sig=q-sentinel-77";
  auto fetched = client_.Resolve(session, "v1", CancelToken::Never());
  ASSERT_TRUE(fetched) << fetched.error().ToString();
  std::string text = captured->str();
  ASSERT_TRUE(log::Init({}));  // back to info for the other tests

  EXPECT_NE(text.find("registry.request method=GET "
                      "url=http://r.test/v2/library/app/manifests/v1?<redacted> status=500"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("status=200 bytes=" + std::to_string(std::string(kManifest).size())),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("registry.retry url=http://r.test/v2/library/app/manifests/v1?<redacted> "
                      "attempt=2 max_attempts=3 wait_ms="),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("reason=\"GET /library/app/manifests/v1 at http://r.test/v2: HTTP 500\""),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("registry.token_fetched host=r.test realm_host=auth.test "
                      "scope=repository:library/app:pull grant=user expires_in_s=300"),
            std::string::npos)
      << text;
  for (const std::string& secret :
       {password, token, std::string("q-sentinel-77"), Base64Encode("u:" + password)}) {
    EXPECT_EQ(text.find(secret), std::string::npos) << secret << " leaked into\n" << text;
  }
}

// A loopback endpoint with the plain http fallback: the first request goes to https:// and may
// fall back (the transport does that, and says so in https_failure); the client then remembers
// the endpoint and asks the rest over http:// directly, with its credentials, and logs the
// fallback once at debug.
TEST_F(ClientTest, PlainHttpFallbackIsRememberedPerEndpointAndLogged) {
  static std::ostringstream* captured = new std::ostringstream();  // outlives the log sink
  ASSERT_TRUE(log::Init({.level = log::Level::kDebug}));
  log::AddSinkForTest(std::make_shared<spdlog::sinks::ostream_sink_mt>(*captured));
  credentials_ = {.username = "u", .password = Secret("pw-2f81")};
  Session session = MakeSession({"https://127.0.0.1:5000", "https://127.0.0.2:5000"});
  session.endpoints[0].plain_http_fallback = PlainHttpFallback::kWhenServerIsNotTls;
  HttpResponse fell_back = ManifestResponse();
  fell_back.https_failure = Error(ErrorCode::kUnavailable, "wrong version number");
  transport_.Respond("GET", "https://127.0.0.1:5000/v2/library/app/manifests/", fell_back);
  transport_.Respond("GET", "http://127.0.0.1:5000/v2/library/app/manifests/", ManifestResponse());
  transport_.Respond("GET", "http://127.0.0.1:5000/v2/library/app/blobs/",
                     {.status = 401, .headers = {{"www-authenticate", R"(Basic realm="R")"}}});
  transport_.Respond("GET", "http://127.0.0.1:5000/v2/library/app/blobs/",
                     {.status = 200, .body = "blob"});
  const image::Descriptor blob{.digest = Digest::Sha256Of("blob"), .size = 4};

  Result<FetchedManifest> resolved = client_.Resolve(session, "v1", CancelToken::Never());
  ASSERT_TRUE(resolved) << resolved.error().ToString();
  EXPECT_EQ(resolved->endpoint, "http://127.0.0.1:5000/v2") << "the URL it was reached at";
  ASSERT_TRUE(client_.Resolve(session, "v2", CancelToken::Never()));
  Result<std::string> fetched =
      client_.FetchSmallBlob(session, blob, 1 << 10, CancelToken::Never());
  ASSERT_TRUE(fetched) << fetched.error().ToString();
  std::string text = captured->str();
  ASSERT_TRUE(log::Init({}));  // back to info for the other tests

  std::vector<HttpRequest> requests = transport_.requests();
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_EQ(requests[0].url, "https://127.0.0.1:5000/v2/library/app/manifests/v1");
  EXPECT_EQ(requests[0].plain_http_fallback, PlainHttpFallback::kWhenServerIsNotTls);
  EXPECT_EQ(requests[1].url, "http://127.0.0.1:5000/v2/library/app/manifests/v2");
  EXPECT_EQ(requests[1].plain_http_fallback, PlainHttpFallback::kNever);
  EXPECT_EQ(requests[3].url,
            "http://127.0.0.1:5000/v2/library/app/blobs/" + blob.digest.ToString());
  bool authorized = false;
  for (const auto& [name, value] : requests[3].headers) authorized |= name == "Authorization";
  EXPECT_TRUE(authorized) << "credentials still go to the endpoint over plain http";
  size_t first = text.find("registry.plain_http_fallback host=127.0.0.1:5000");
  ASSERT_NE(first, std::string::npos) << text;
  EXPECT_EQ(text.find("registry.plain_http_fallback", first + 1), std::string::npos) << text;
  EXPECT_NE(text.find("https_error=\"wrong version number\""), std::string::npos) << text;
  // The other endpoint was never asked, and keeps https without a fallback.
  EXPECT_EQ(session.endpoints[1].plain_http_fallback, PlainHttpFallback::kNever);
}

// An endpoint without the fallback never has its requests marked for one, even to a loopback
// host (written as https://, or with TLS settings).
TEST_F(ClientTest, EndpointWithoutFallbackAsksOverHttpsOnly) {
  transport_.Respond("GET", "https://127.0.0.1:5000/v2/library/app/manifests/v1",
                     ManifestResponse());
  ASSERT_TRUE(client_.Resolve(MakeSession({"https://127.0.0.1:5000"}), "v1", CancelToken::Never()));
  ASSERT_EQ(transport_.requests().size(), 1u);
  EXPECT_EQ(transport_.requests()[0].plain_http_fallback, PlainHttpFallback::kNever);
}

TEST_F(ClientTest, RedirectGetsNoAuthorization) {
  credentials_ = {.registry_token = Secret("secret-token")};
  std::string blob = "blob-bytes";
  transport_.Respond("GET", "http://r.test/v2/library/app/blobs/",
                     {.status = 307, .headers = {{"location", "http://storage.test/o?sig=1"}}});
  transport_.Respond("GET", "http://storage.test/o", {.status = 200, .body = blob});
  StringSink sink;
  image::Descriptor descriptor{.digest = Digest::Sha256Of(blob),
                               .size = static_cast<int64_t>(blob.size())};
  auto served =
      client_.FetchBlob(MakeSession({"http://r.test"}), descriptor, sink, CancelToken::Never());
  ASSERT_TRUE(served) << served.error().ToString();
  EXPECT_EQ(sink.bytes, blob);
  auto requests = transport_.requests();
  ASSERT_EQ(requests.size(), 2u);
  auto has_auth = [](const HttpRequest& request) {
    for (const auto& [name, value] : request.headers) {
      if (name == "Authorization") return true;
    }
    return false;
  };
  EXPECT_TRUE(has_auth(requests[0]));
  EXPECT_FALSE(has_auth(requests[1]));
}

TEST_F(ClientTest, RedirectLoopIsRefused) {
  transport_.Respond("GET", "http://r.test/v2/library/app/manifests/v1",
                     {.status = 302, .headers = {{"location", "/v2/library/app/manifests/v1"}}});
  auto fetched = client_.Resolve(MakeSession({"http://r.test"}), "v1", CancelToken::Never());
  ASSERT_FALSE(fetched);
  EXPECT_NE(fetched.error().ToString().find("redirects"), std::string::npos);
}

TEST_F(ClientTest, ResumeWithRangeAndServerIgnoringIt) {
  std::string blob = "0123456789";
  image::Descriptor descriptor{.digest = Digest::Sha256Of(blob), .size = 10};
  StringSink sink;
  sink.bytes = "01234";
  transport_.Respond(
      "GET", "http://r.test/v2/library/app/blobs/",
      {.status = 206, .headers = {{"content-range", "bytes 5-9/10"}}, .body = "56789"});
  ASSERT_TRUE(
      client_.FetchBlob(MakeSession({"http://r.test"}), descriptor, sink, CancelToken::Never()));
  EXPECT_EQ(sink.bytes, blob);
  auto requests = transport_.requests();
  bool range = false;
  for (const auto& [name, value] : requests.back().headers) range |= value == "bytes=5-";
  EXPECT_TRUE(range);

  // A server that ignores Range sends everything: the sink starts over.
  FakeTransport plain;
  Client client(plain, RetryPolicy{.initial_backoff = std::chrono::milliseconds(1)});
  plain.Respond("GET", "http://r.test/v2/", {.status = 200, .body = blob});
  StringSink partial;
  partial.bytes = "01234";
  Session session = MakeSession({"http://r.test"});
  session.authorizer = nullptr;
  ASSERT_TRUE(client.FetchBlob(session, descriptor, partial, CancelToken::Never()));
  EXPECT_EQ(partial.bytes, blob);
  EXPECT_EQ(partial.truncations, 1);
}

TEST_F(ClientTest, ShortBlobIsDataLoss) {
  image::Descriptor descriptor{.digest = Digest::Sha256Of("abc"), .size = 3};
  transport_.Respond("GET", "http://r.test/v2/", {.status = 200, .body = "ab"});
  StringSink sink;
  auto served =
      client_.FetchBlob(MakeSession({"http://r.test"}), descriptor, sink, CancelToken::Never());
  ASSERT_FALSE(served);
  EXPECT_EQ(served.error().code(), ErrorCode::kDataLoss);
}

TEST_F(ClientTest, PullOnlyMirrorDoesNotResolveTags) {
  Session session = MakeSession({"http://pull-only.test", "http://r.test"});
  session.endpoints[0].capabilities = kCapabilityPull;
  transport_.Respond("GET", "http://r.test/v2/", ManifestResponse());
  transport_.Respond("GET", "http://pull-only.test/v2/", ManifestResponse());
  auto fetched = client_.Resolve(session, "v1", CancelToken::Never());
  ASSERT_TRUE(fetched);
  EXPECT_EQ(fetched->endpoint, "http://r.test/v2");
  auto by_digest =
      client_.Resolve(session, Digest::Sha256Of(kManifest).ToString(), CancelToken::Never());
  ASSERT_TRUE(by_digest);
  EXPECT_EQ(by_digest->endpoint, "http://pull-only.test/v2");
}

TEST_F(ClientTest, CancelledBeforeStart) {
  CancelToken cancel;
  cancel.Cancel();
  auto fetched = client_.Resolve(MakeSession({"http://r.test"}), "v1", cancel);
  ASSERT_FALSE(fetched);
  EXPECT_EQ(fetched.error().code(), ErrorCode::kCancelled);
}

// A mirror whose transfers stall after a few bytes: it hands them to the sink, then fails the way
// CurlTransport's watchdog does (kUnavailable). Everything else goes to `next`.
class StallingMirrorTransport final : public HttpTransport {
 public:
  StallingMirrorTransport(HttpTransport& next, std::string mirror_prefix, std::string first_bytes)
      : next_(next),
        mirror_prefix_(std::move(mirror_prefix)),
        first_bytes_(std::move(first_bytes)) {}

  Result<HttpResponse> RoundTrip(const HttpRequest& request, const BodySink* sink,
                                 const CancelToken& cancel) override {
    {
      std::lock_guard lock(mutex_);
      requests_.push_back(request);
    }
    if (!request.url.starts_with(mirror_prefix_)) return next_.RoundTrip(request, sink, cancel);
    HttpResponse head{.status = 200};
    if (sink != nullptr) BERTH_RETURN_IF_ERROR((*sink)(head, first_bytes_));
    return Fail(ErrorCode::kUnavailable,
                "GET " + request.url + ": stalled: no data received for 1s");
  }

  std::vector<HttpRequest> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  HttpTransport& next_;
  std::string mirror_prefix_;
  std::string first_bytes_;
  mutable std::mutex mutex_;
  std::vector<HttpRequest> requests_;
};

TEST_F(ClientTest, WatchdogGivesUpOnTheEndpointAndTheNextResumesTheBlob) {
  std::string blob = "0123456789";
  image::Descriptor descriptor{.digest = Digest::Sha256Of(blob), .size = 10};
  transport_.Respond(
      "GET", "http://r.test/v2/library/app/blobs/",
      {.status = 206, .headers = {{"content-range", "bytes 4-9/10"}}, .body = "456789"});
  StallingMirrorTransport stalling(transport_, "http://mirror.test/", "0123");
  Client client(stalling, RetryPolicy{.max_attempts = 4,
                                      .initial_backoff = std::chrono::milliseconds(1),
                                      .progress_timeout = std::chrono::seconds(7),
                                      .min_bytes_per_second = 1000,
                                      .min_speed_window = std::chrono::seconds(9)});
  Session session = MakeSession({"http://mirror.test", "http://r.test"});
  session.authorizer = nullptr;
  StringSink sink;
  Result<std::string> served = client.FetchBlob(session, descriptor, sink, CancelToken::Never());
  ASSERT_TRUE(served) << served.error().ToString();
  EXPECT_EQ(*served, "http://r.test/v2");
  EXPECT_EQ(sink.bytes, blob);
  EXPECT_EQ(sink.truncations, 0);

  std::vector<HttpRequest> requests = stalling.requests();
  ASSERT_EQ(requests.size(), 2u);  // one try on the stalled mirror: no retries there
  EXPECT_TRUE(requests[0].url.starts_with("http://mirror.test/"));
  EXPECT_TRUE(requests[1].url.starts_with("http://r.test/"));
  bool range = false;
  for (const auto& [name, value] : requests[1].headers) range |= value == "bytes=4-";
  EXPECT_TRUE(range);
  // The policy's watchdog settings reach every request.
  for (const HttpRequest& request : requests) {
    EXPECT_EQ(request.progress_timeout, std::chrono::seconds(7));
    EXPECT_EQ(request.min_bytes_per_second, 1000u);
    EXPECT_EQ(request.min_speed_window, std::chrono::seconds(9));
  }

  // The stalled mirror is remembered as dead: the next blob goes to the registry first.
  StringSink again;
  again.bytes = "0123";
  ASSERT_TRUE(client.FetchBlob(session, descriptor, again, CancelToken::Never()));
  EXPECT_TRUE(stalling.requests().back().url.starts_with("http://r.test/"));
  EXPECT_EQ(stalling.requests().size(), 3u);
}

// Records what the client reports, as berthd's metrics would count it.
class RecordingObserver final : public RegistryObserver {
 public:
  void RequestDone(std::string_view host, FetchKind kind, int status, uint64_t bytes) override {
    std::lock_guard lock(mutex_);
    events.push_back(fmt::format("request {} {} {} {}", host, FetchKindName(kind), status, bytes));
  }
  void Retried(std::string_view host, RetryReason reason) override {
    std::lock_guard lock(mutex_);
    events.push_back(fmt::format("retry {} {}", host, RetryReasonName(reason)));
  }
  void FellBack(std::string_view host) override {
    std::lock_guard lock(mutex_);
    events.push_back(fmt::format("fallback {}", host));
  }
  void EndpointDead(std::string_view host) override {
    std::lock_guard lock(mutex_);
    events.push_back(fmt::format("dead {}", host));
  }
  void WatchdogTripped(Watchdog watchdog) override {
    std::lock_guard lock(mutex_);
    events.push_back(fmt::format("watchdog {}", WatchdogName(watchdog)));
  }
  std::vector<std::string> events;

 private:
  std::mutex mutex_;
};

TEST_F(ClientTest, ObserverHearsRequestsRetriesFallbacksAndDeadEndpoints) {
  RecordingObserver observer;
  Client client(transport_,
                RetryPolicy{.max_attempts = 3, .initial_backoff = std::chrono::milliseconds(1)},
                &observer);
  // mirror-a refuses connections, mirror-b answers 404, up.test fails once with 500.
  transport_.Respond("GET", "http://mirror-b.test/v2/", {.status = 404, .body = "{}"});
  transport_.Respond("GET", "http://up.test/v2/library/app/manifests/v1", {.status = 500});
  transport_.Respond("GET", "http://up.test/v2/library/app/manifests/v1", ManifestResponse());
  Session session = MakeSession({"http://mirror-a.test", "http://mirror-b.test", "http://up.test"});
  ASSERT_TRUE(client.Resolve(session, "v1", CancelToken::Never()));

  const std::string config = "{\"config\":1}";
  transport_.Respond("GET", "http://up.test/v2/library/app/blobs/",
                     {.status = 200, .body = config});
  image::Descriptor config_descriptor{.digest = Digest::Sha256Of(config),
                                      .size = static_cast<int64_t>(config.size())};
  Session upstream = MakeSession({"http://up.test"});
  ASSERT_TRUE(client.FetchSmallBlob(upstream, config_descriptor, 1024, CancelToken::Never()));
  StringSink sink;
  ASSERT_TRUE(client.FetchBlob(upstream, config_descriptor, sink, CancelToken::Never()));

  const std::string manifest_bytes = std::to_string(std::string_view(kManifest).size());
  const std::string config_bytes = std::to_string(config.size());
  EXPECT_EQ(observer.events, (std::vector<std::string>{
                                 "request mirror-a.test manifest 0 0",
                                 "dead mirror-a.test",
                                 "fallback mirror-a.test",
                                 "request mirror-b.test manifest 404 2",
                                 "fallback mirror-b.test",
                                 "request up.test manifest 500 0",
                                 "retry up.test status",
                                 "request up.test manifest 200 " + manifest_bytes,
                                 "request up.test config 200 " + config_bytes,
                                 "request up.test layer 200 " + config_bytes,
                             }));
}

// ----------------------------------------------------------------------------------------------
// Peers: blob-only endpoints in front of the registry's.

// Hears what the client reports about peers.
class PeerRecorder final : public RegistryObserver {
 public:
  void RequestDone(std::string_view, FetchKind, int, uint64_t) override {}
  void Retried(std::string_view, RetryReason) override {}
  void FellBack(std::string_view) override {}
  void EndpointDead(std::string_view) override {}
  void WatchdogTripped(Watchdog) override {}
  void BlobBytes(BlobSource source, std::string_view host, uint64_t bytes) override {
    std::lock_guard lock(mutex_);
    events.push_back(fmt::format("bytes {} {} {}", BlobSourceName(source), host, bytes));
  }
  void PeerGivenUp(std::string_view peer, PeerFailure reason) override {
    std::lock_guard lock(mutex_);
    events.push_back(fmt::format("given up {} {}", peer, PeerFailureName(reason)));
  }
  std::vector<std::string> events;

 private:
  std::mutex mutex_;
};

class ClientPeersTest : public ClientTest {
 protected:
  ClientPeersTest()
      : client_with_peers_(transport_, RetryPolicy{.initial_backoff = std::chrono::milliseconds(1)},
                           &recorder_) {}

  // A session on http://r.test whose blobs' peers are `peers` (hosts), in order.
  Session SessionWithPeers(std::vector<std::string> peers) {
    Session session = MakeSession({"http://r.test"});
    session.blob_peers = [peers](const Digest&) {
      std::vector<RegistryEndpoint> endpoints;
      for (const std::string& host : peers) {
        endpoints.push_back({.scheme = "http",
                             .host = host,
                             .path = "/v2",
                             .capabilities = kCapabilityPull,
                             .mirror_of = "r.test",
                             .is_peer = true});
      }
      return endpoints;
    };
    return session;
  }

  static std::string HeaderOf(const HttpRequest& request, std::string_view name) {
    for (const auto& [header, value] : request.headers) {
      if (header == name) return value;
    }
    return "";
  }

  PeerRecorder recorder_;
  Client client_with_peers_;
};

TEST_F(ClientPeersTest, BlobsComeFromTheFirstPeerThatHasThemWithNsAndNoCredentials) {
  const std::string blob = "layer bytes";
  image::Descriptor descriptor{.digest = Digest::Sha256Of(blob),
                               .size = static_cast<int64_t>(blob.size())};
  credentials_ = {.username = "ci", .password = Secret("s3cret")};
  transport_.Respond("GET", "http://peer-a.test/v2/", {.status = 404, .body = "{}"});
  transport_.Respond("GET", "http://peer-b.test/v2/", {.status = 200, .body = blob});
  StringSink sink;
  Result<std::string> served = client_with_peers_.FetchBlob(
      SessionWithPeers({"peer-a.test", "peer-b.test"}), descriptor, sink, CancelToken::Never());
  ASSERT_TRUE(served) << served.error().ToString();
  EXPECT_EQ(*served, "http://peer-b.test/v2");
  EXPECT_EQ(sink.bytes, blob);
  auto requests = transport_.requests();
  ASSERT_EQ(requests.size(), 2u);  // one per peer, none to the registry
  EXPECT_EQ(requests[1].url,
            fmt::format("http://peer-b.test/v2/library/app/blobs/{}?ns=r.test", descriptor.digest));
  for (const HttpRequest& request : requests) EXPECT_EQ(HeaderOf(request, "Authorization"), "");
  EXPECT_EQ(recorder_.events,
            (std::vector<std::string>{"given up peer-a.test not_found",
                                      fmt::format("bytes peer peer-b.test {}", blob.size())}));
}

TEST_F(ClientPeersTest, APeerIsSentNoCredentialsEvenWhenItAsksForThem) {
  const std::string config = "{\"config\":1}";
  image::Descriptor descriptor{.digest = Digest::Sha256Of(config),
                               .size = static_cast<int64_t>(config.size())};
  credentials_ = {.username = "ci", .password = Secret("s3cret")};
  transport_.Respond("GET", "http://peer-a.test/v2/",
                     {.status = 401, .headers = {{"www-authenticate", "Basic realm=\"peer\""}}});
  transport_.Respond("GET", "http://r.test/v2/", {.status = 200, .body = config});
  Result<std::string> fetched = client_with_peers_.FetchSmallBlob(
      SessionWithPeers({"peer-a.test"}), descriptor, 1024, CancelToken::Never());
  ASSERT_TRUE(fetched) << fetched.error().ToString();
  EXPECT_EQ(*fetched, config);
  auto requests = transport_.requests();
  ASSERT_EQ(requests.size(), 2u);  // the peer once, unanswered; then the registry
  EXPECT_TRUE(requests[0].url.starts_with("http://peer-a.test/"));
  EXPECT_EQ(HeaderOf(requests[0], "Authorization"), "");
  EXPECT_EQ(recorder_.events[0], "given up peer-a.test error");
}

TEST_F(ClientPeersTest, ManifestsAreNeverAskedOfPeers) {
  transport_.Respond("GET", "http://r.test/v2/library/app/manifests/", ManifestResponse());
  Session session = SessionWithPeers({"peer-a.test"});
  ASSERT_TRUE(client_with_peers_.Resolve(session, "v1", CancelToken::Never()));
  ASSERT_TRUE(client_with_peers_.FetchManifest(
      session, {.digest = Digest::Sha256Of(kManifest), .size = -1}, CancelToken::Never()));
  for (const HttpRequest& request : transport_.requests()) {
    EXPECT_TRUE(request.url.starts_with("http://r.test/")) << request.url;
  }
}

TEST_F(ClientPeersTest, BadBytesFromAPeerAreDroppedAndTheRegistryServesTheWholeBlob) {
  const std::string blob = "0123456789";
  image::Descriptor descriptor{.digest = Digest::Sha256Of(blob), .size = 10};
  transport_.Respond("GET", "http://peer-a.test/v2/", {.status = 200, .body = "0123456XYZ"});
  transport_.Respond("GET", "http://r.test/v2/", {.status = 200, .body = blob});
  StringSink sink;
  Result<std::string> served = client_with_peers_.FetchBlob(SessionWithPeers({"peer-a.test"}),
                                                            descriptor, sink, CancelToken::Never());
  ASSERT_TRUE(served) << served.error().ToString();
  EXPECT_EQ(*served, "http://r.test/v2");
  EXPECT_EQ(sink.bytes, blob);
  EXPECT_EQ(sink.truncations, 1);
  auto requests = transport_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(HeaderOf(requests[1], "Range"), "");  // nothing of the peer's was kept
  EXPECT_EQ(recorder_.events,
            (std::vector<std::string>{"bytes peer peer-a.test 10", "given up peer-a.test bad_bytes",
                                      "bytes registry r.test 10"}));
}

TEST_F(ClientPeersTest, APeerSendingTooFewBytesIsGivenUpOnAndTheRegistrySendsTheBlobWhole) {
  const std::string blob = "0123456789";
  image::Descriptor descriptor{.digest = Digest::Sha256Of(blob), .size = 10};
  // The peer ends its body after five bytes of ten: nothing it sent is kept.
  transport_.Respond("GET", "http://peer-a.test/v2/", {.status = 200, .body = "XXXXX"});
  transport_.Respond("GET", "http://r.test/v2/", {.status = 200, .body = blob});
  StringSink sink;
  Result<std::string> served = client_with_peers_.FetchBlob(SessionWithPeers({"peer-a.test"}),
                                                            descriptor, sink, CancelToken::Never());
  ASSERT_TRUE(served) << served.error().ToString();
  EXPECT_EQ(sink.bytes, blob);
  EXPECT_EQ(sink.truncations, 1);
  auto requests = transport_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(HeaderOf(requests[1], "Range"), "");
  EXPECT_EQ(std::count(recorder_.events.begin(), recorder_.events.end(),
                       "given up peer-a.test bad_bytes"),
            1);
}

TEST_F(ClientPeersTest, BytesOfAPeerTheSinkRefusesAreDroppedAndTheRegistrySendsTheBlobWhole) {
  const std::string blob = "0123456789";
  image::Descriptor descriptor{.digest = Digest::Sha256Of(blob), .size = 10};
  // The sink (the unpacker's decoder, say) refuses the peer's bytes as they come.
  transport_.Respond("GET", "http://peer-a.test/v2/", {.status = 200, .body = "XXXXXXXXXX"});
  transport_.Respond("GET", "http://r.test/v2/", {.status = 200, .body = blob});
  StringSink sink;
  sink.refuse_first_byte = 'X';
  Result<std::string> served = client_with_peers_.FetchBlob(SessionWithPeers({"peer-a.test"}),
                                                            descriptor, sink, CancelToken::Never());
  ASSERT_TRUE(served) << served.error().ToString();
  EXPECT_EQ(sink.bytes, blob);
  auto requests = transport_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(HeaderOf(requests[1], "Range"), "") << "the refused bytes were resumed from";
  EXPECT_EQ(std::count(recorder_.events.begin(), recorder_.events.end(),
                       "given up peer-a.test bad_bytes"),
            1);
}

TEST_F(ClientPeersTest, BytesAnEarlierPullLeftAreCheckedWhenPeersAreAsked) {
  const std::string blob = "0123456789";
  image::Descriptor descriptor{.digest = Digest::Sha256Of(blob), .size = 10};
  // An earlier pull left five bytes, wrong ones (a peer's, say); the peer now lacks the blob
  // and the registry resumes from them, then sends the blob whole once the digest refuses it.
  transport_.Respond("GET", "http://peer-a.test/v2/", {.status = 404, .body = "{}"});
  transport_.Respond(
      "GET", "http://r.test/v2/",
      {.status = 206, .headers = {{"content-range", "bytes 5-9/10"}}, .body = "56789"});
  transport_.Respond("GET", "http://r.test/v2/", {.status = 200, .body = blob});
  StringSink sink;
  sink.bytes = "XXXXX";
  ASSERT_TRUE(client_with_peers_.FetchBlob(SessionWithPeers({"peer-a.test"}), descriptor, sink,
                                           CancelToken::Never()));
  EXPECT_EQ(sink.bytes, blob);
  EXPECT_EQ(transport_.requests().size(), 3u);
  // Nobody to blame but the 404.
  EXPECT_EQ(recorder_.events,
            (std::vector<std::string>{"given up peer-a.test not_found", "bytes registry r.test 5",
                                      "bytes registry r.test 10"}));
}

TEST_F(ClientPeersTest, ADeadPeerIsGivenUpOnAndTheRegistryServesTheBlob) {
  const std::string blob = "0123456789";
  image::Descriptor descriptor{.digest = Digest::Sha256Of(blob), .size = 10};
  transport_.Respond("GET", "http://r.test/v2/", {.status = 200, .body = blob});
  StringSink sink;  // peer-a.test has no rule: its connection is refused
  ASSERT_TRUE(client_with_peers_.FetchBlob(SessionWithPeers({"peer-a.test"}), descriptor, sink,
                                           CancelToken::Never()));
  EXPECT_EQ(sink.bytes, blob);
  EXPECT_EQ(recorder_.events[0], "given up peer-a.test unavailable");
}

TEST_F(ClientPeersTest, WhenTheRegistryFailsTooItsErrorIsReportedNotThePeers) {
  image::Descriptor descriptor{.digest = Digest::Sha256Of("x"), .size = 1};
  transport_.Respond("GET", "http://peer-a.test/v2/", {.status = 200, .body = "y"});
  transport_.Respond("GET", "http://r.test/v2/", {.status = 404, .body = "{}"});
  StringSink sink;
  Result<std::string> served = client_with_peers_.FetchBlob(SessionWithPeers({"peer-a.test"}),
                                                            descriptor, sink, CancelToken::Never());
  ASSERT_FALSE(served);
  EXPECT_EQ(served.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace berth::registry
