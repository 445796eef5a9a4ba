// Proves the real-registry harness (testing/) works against docker-registry 2.8: every
// TestRegistry mode, the token server, and the fault proxy.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "berth/digest/digest.h"
#include "testing/fault_proxy.h"
#include "testing/http_fetch.h"
#include "testing/http_wire.h"
#include "testing/jwt.h"
#include "testing/net_util.h"
#include "testing/test_registry.h"
#include "testing/token_server.h"

namespace berth::testing {
namespace {

// Starts a registry or fails the test with the error.
std::unique_ptr<TestRegistry> StartRegistry(TestRegistryOptions options) {
  Result<std::unique_ptr<TestRegistry>> registry = TestRegistry::Start(std::move(options));
  EXPECT_TRUE(registry) << registry.error().ToString();
  return registry ? std::move(*registry) : nullptr;
}

HttpFetchResponse MustFetch(const HttpFetchRequest& request) {
  Result<HttpFetchResponse> response = HttpFetch(request);
  EXPECT_TRUE(response) << response.error().ToString();
  return response ? *std::move(response) : HttpFetchResponse{};
}

// GET <realm>?service=…&scope=… with optional Basic credentials; returns the "token" field or "".
std::string GetToken(const TokenServer& server, const std::string& scope,
                     const std::string& username = "", const std::string& password = "") {
  HttpFetchRequest request{.url = server.realm() + "?service=" + UrlEncode(server.service()) +
                                  "&scope=" + UrlEncode(scope),
                           .username = username,
                           .password = Secret(password)};
  HttpFetchResponse response = MustFetch(request);
  EXPECT_EQ(response.status, 200) << response.body;
  nlohmann::json body = nlohmann::json::parse(response.body, nullptr, false);
  if (!body.is_object() || !body.contains("token")) return "";
  EXPECT_EQ(body["token"], body["access_token"]);
  EXPECT_TRUE(body.contains("expires_in"));
  EXPECT_TRUE(body.contains("issued_at"));
  return body["token"].get<std::string>();
}

// POST <realm> with a form body; returns the parsed JSON answer (or null) and the status.
std::pair<long, nlohmann::json> PostToken(const TokenServer& server, const std::string& form) {
  HttpFetchResponse response =
      MustFetch({.method = "POST",
                 .url = server.realm(),
                 .headers = {{"Content-Type", "application/x-www-form-urlencoded"}},
                 .body = form});
  return {response.status, nlohmann::json::parse(response.body, nullptr, false)};
}

// A registry request with a bearer token.
HttpFetchRequest WithToken(HttpFetchRequest request, const std::string& token) {
  request.bearer_token = Secret(token);
  return request;
}

// Uploads `content` to repository `name` as one monolithic blob (POST, then PUT with digest).
// Returns the digest, or "" after recording a failure.
std::string PushBlob(const TestRegistry& registry, const std::string& name,
                     const std::string& token, const std::string& content) {
  HttpFetchResponse started =
      MustFetch(WithToken(registry.NewRequest("/v2/" + name + "/blobs/uploads/", "POST"), token));
  EXPECT_EQ(started.status, 202) << started.body << registry.ReadLog();
  std::optional<std::string> location = started.Header("Location");
  if (!location.has_value()) {
    ADD_FAILURE() << "no Location in upload start answer";
    return "";
  }
  std::string digest = Digest::Sha256Of(content).ToString();
  std::string url = location->starts_with("/") ? registry.url() + *location : *location;
  url += (url.find('?') == std::string::npos ? "?" : "&") + std::string("digest=") + digest;
  HttpFetchRequest put = registry.NewRequest("", "PUT");
  put.url = url;
  put.body = content;
  put.headers = {{"Content-Type", "application/octet-stream"}};
  HttpFetchResponse finished = MustFetch(WithToken(put, token));
  EXPECT_EQ(finished.status, 201) << finished.body;
  EXPECT_EQ(finished.Header("Docker-Content-Digest"), digest);
  return digest;
}

TEST(RegistryHarnessTest, PlainHttpAnswersV2) {
  auto registry = StartRegistry({});
  ASSERT_NE(registry, nullptr);
  EXPECT_EQ(registry->url(), "http://" + registry->host());
  HttpFetchResponse response = MustFetch(registry->NewRequest("/v2/"));
  EXPECT_EQ(response.status, 200) << registry->ReadLog();
  EXPECT_EQ(response.Header("Docker-Distribution-API-Version"), "registry/2.0");
}

TEST(RegistryHarnessTest, TlsVerifiesWithGeneratedCaOnly) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTls});
  ASSERT_NE(registry, nullptr);
  EXPECT_EQ(registry->url(), "https://" + registry->host());
  EXPECT_EQ(MustFetch(registry->NewRequest("/v2/")).status, 200) << registry->ReadLog();

  HttpFetchRequest without_ca{.url = registry->url() + "/v2/"};
  Result<HttpFetchResponse> refused = HttpFetch(without_ca);
  ASSERT_FALSE(refused) << "the system trust store must not trust the test CA";
  EXPECT_EQ(refused.error().code(), ErrorCode::kUnavailable);
}

TEST(RegistryHarnessTest, ClientCertModeRequiresClientCertificate) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTlsClientCert});
  ASSERT_NE(registry, nullptr);
  EXPECT_EQ(MustFetch(registry->NewRequest("/v2/")).status, 200) << registry->ReadLog();

  HttpFetchRequest without_cert = registry->NewRequest("/v2/");
  without_cert.client_cert_file.clear();
  without_cert.client_key_file.clear();
  Result<HttpFetchResponse> refused = HttpFetch(without_cert);
  // TLS 1.3 may finish the handshake before the server checks the (missing) certificate; then
  // the refusal arrives as an alert instead of a response. Either way no HTTP answer is a 200.
  EXPECT_TRUE(!refused || refused->status != 200) << "status " << refused->status;
  if (!refused) {
    EXPECT_EQ(refused.error().code(), ErrorCode::kUnavailable);
  }
}

TEST(RegistryHarnessTest, BasicAuthChallengesAndAcceptsCredentials) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kBasicAuth, .realm = "harness-realm"});
  ASSERT_NE(registry, nullptr);
  HttpFetchResponse anonymous = MustFetch(registry->NewRequest("/v2/"));
  EXPECT_EQ(anonymous.status, 401);
  EXPECT_EQ(anonymous.Header("WWW-Authenticate"), "Basic realm=\"harness-realm\"");

  HttpFetchRequest with_credentials = registry->NewRequest("/v2/");
  with_credentials.username = registry->username();
  with_credentials.password = registry->password();
  EXPECT_EQ(MustFetch(with_credentials).status, 200) << registry->ReadLog();

  with_credentials.password = Secret("wrong");
  EXPECT_EQ(MustFetch(with_credentials).status, 401);
}

TEST(RegistryHarnessTest, BasicAuthOverTls) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kBasicAuth, .auth_over_tls = true});
  ASSERT_NE(registry, nullptr);
  EXPECT_TRUE(registry->tls());
  HttpFetchRequest request = registry->NewRequest("/v2/");
  request.username = registry->username();
  request.password = registry->password();
  EXPECT_EQ(MustFetch(request).status, 200) << registry->ReadLog();
}

TEST(RegistryHarnessTest, Schema1CompatibilityConfigIsAccepted) {
  auto registry = StartRegistry({.enable_schema1 = true});
  ASSERT_NE(registry, nullptr);
  EXPECT_EQ(MustFetch(registry->NewRequest("/v2/")).status, 200);
}

TEST(RegistryHarnessTest, RestartKeepsPortAndStorage) {
  auto registry = StartRegistry({});
  ASSERT_NE(registry, nullptr);
  uint16_t port = registry->port();
  Result<void> restarted = registry->Restart();
  ASSERT_TRUE(restarted) << restarted.error().ToString();
  EXPECT_EQ(registry->port(), port);
  EXPECT_EQ(MustFetch(registry->NewRequest("/v2/")).status, 200);
  registry->Kill();
  EXPECT_FALSE(HttpFetch(registry->NewRequest("/v2/")));
}

TEST(RegistryHarnessTest, TokenAuthChallengeThenTokenGivesAccess) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTokenAuth});
  ASSERT_NE(registry, nullptr);
  TokenServer* tokens = registry->token_server();
  ASSERT_NE(tokens, nullptr);

  HttpFetchResponse challenge = MustFetch(registry->NewRequest("/v2/"));
  EXPECT_EQ(challenge.status, 401);
  EXPECT_EQ(challenge.Header("WWW-Authenticate"),
            "Bearer realm=\"" + tokens->realm() + "\",service=\"" + tokens->service() + "\"");

  std::string token = GetToken(*tokens, "repository:harness/app:pull", registry->username(),
                               registry->password().reveal());
  ASSERT_FALSE(token.empty());
  EXPECT_EQ(MustFetch(WithToken(registry->NewRequest("/v2/"), token)).status, 200)
      << registry->ReadLog();
  EXPECT_EQ(tokens->stats().tokens_issued, 1u);
  EXPECT_EQ(tokens->stats().get_requests, 1u);
  EXPECT_EQ(tokens->requested_scopes(), std::vector<std::string>{"repository:harness/app:pull"});

  // The JWT carries what Distribution checks.
  Result<DecodedJwt> jwt = VerifyJwt(token, registry->pki()->token_cert_file());
  ASSERT_TRUE(jwt) << jwt.error().ToString();
  EXPECT_EQ(jwt->claims["aud"], tokens->service());
  EXPECT_EQ(jwt->claims["iss"], tokens->issuer());
  EXPECT_EQ(jwt->claims["sub"], registry->username());
  EXPECT_EQ(jwt->claims["access"][0]["name"], "harness/app");

  // Wrong password: the token server refuses.
  HttpFetchResponse refused =
      MustFetch({.url = tokens->realm() + "?service=" + UrlEncode(tokens->service()),
                 .username = registry->username(),
                 .password = Secret("nope")});
  EXPECT_EQ(refused.status, 401);
  EXPECT_EQ(tokens->stats().rejected_requests, 1u);
}

TEST(RegistryHarnessTest, TokenAuthPushedBlobReadsBackOnlyWithTokenForItsRepository) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTokenAuth});
  ASSERT_NE(registry, nullptr);
  TokenServer& tokens = *registry->token_server();
  const std::string user = registry->username();
  const std::string password = registry->password().reveal();

  std::string push_token = GetToken(tokens, "repository:harness/app:pull,push", user, password);
  const std::string content = "layer bytes for the harness test";
  std::string digest = PushBlob(*registry, "harness/app", push_token, content);
  ASSERT_FALSE(digest.empty());

  std::string pull_token = GetToken(tokens, "repository:harness/app:pull", user, password);
  HttpFetchResponse blob =
      MustFetch(WithToken(registry->NewRequest("/v2/harness/app/blobs/" + digest), pull_token));
  ASSERT_EQ(blob.status, 200) << registry->ReadLog();
  EXPECT_EQ(Digest::Sha256Of(blob.body).ToString(), digest);
  EXPECT_EQ(blob.body, content);

  // A token for another repository does not open this one.
  std::string other_token = GetToken(tokens, "repository:harness/other:pull", user, password);
  HttpFetchResponse refused =
      MustFetch(WithToken(registry->NewRequest("/v2/harness/app/blobs/" + digest), other_token));
  EXPECT_EQ(refused.status, 401);
  EXPECT_NE(refused.Header("WWW-Authenticate").value_or("").find("insufficient_scope"),
            std::string::npos);
  // A pull-only token cannot push.
  HttpFetchResponse no_push = MustFetch(
      WithToken(registry->NewRequest("/v2/harness/app/blobs/uploads/", "POST"), pull_token));
  EXPECT_EQ(no_push.status, 401);
}

TEST(RegistryHarnessTest, TokenAuthAnonymousPullOnlyOnPublicRepositories) {
  auto registry = StartRegistry(
      {.mode = TestRegistryMode::kTokenAuth, .token = {.public_repositories = {"public/app"}}});
  ASSERT_NE(registry, nullptr);
  TokenServer& tokens = *registry->token_server();
  // tags/list on an empty repository: 404 NAME_UNKNOWN when allowed, 401 when not.
  std::string public_token = GetToken(tokens, "repository:public/app:pull");
  EXPECT_EQ(
      MustFetch(WithToken(registry->NewRequest("/v2/public/app/tags/list"), public_token)).status,
      404);
  std::string private_token = GetToken(tokens, "repository:private/app:pull");
  EXPECT_EQ(
      MustFetch(WithToken(registry->NewRequest("/v2/private/app/tags/list"), private_token)).status,
      401);
  EXPECT_EQ(tokens.stats().anonymous_requests, 2u);
}

TEST(RegistryHarnessTest, TokenAuthPasswordAndRefreshTokenGrants) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTokenAuth});
  ASSERT_NE(registry, nullptr);
  TokenServer& tokens = *registry->token_server();
  const std::string scope = UrlEncode("repository:harness/app:pull");
  const std::string common = "&service=" + UrlEncode(tokens.service()) + "&client_id=berth-test";

  auto [status, password_grant] =
      PostToken(tokens, "grant_type=password&username=" + registry->username() +
                            "&password=" + UrlEncode(registry->password().reveal()) +
                            "&access_type=offline&scope=" + scope + common);
  ASSERT_EQ(status, 200) << password_grant.dump();
  ASSERT_TRUE(password_grant.contains("refresh_token"));
  std::string refresh_token = password_grant["refresh_token"];

  auto [refresh_status, refreshed] =
      PostToken(tokens, "grant_type=refresh_token&refresh_token=" + refresh_token +
                            "&scope=" + scope + common);
  ASSERT_EQ(refresh_status, 200) << refreshed.dump();
  std::string access_token = refreshed["access_token"];
  EXPECT_EQ(
      MustFetch(WithToken(registry->NewRequest("/v2/harness/app/tags/list"), access_token)).status,
      404)
      << "a refreshed token must grant pull (404 = allowed, repository empty)";
  EXPECT_EQ(tokens.stats().password_grants, 1u);
  EXPECT_EQ(tokens.stats().refresh_token_grants, 1u);

  EXPECT_EQ(PostToken(tokens, "grant_type=refresh_token&refresh_token=bogus" + common).first, 401);
  EXPECT_EQ(PostToken(tokens, "grant_type=password&username=" + registry->username() +
                                  "&password=wrong" + common)
                .first,
            401);
  EXPECT_EQ(PostToken(tokens, "grant_type=password&username=x&password=y").first, 400)
      << "client_id is required";
}

TEST(RegistryHarnessTest, TokenAuthExpiredTokenIsRejected) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTokenAuth});
  ASSERT_NE(registry, nullptr);
  TokenServer& tokens = *registry->token_server();
  std::vector<TokenAccess> access = {
      {.type = "repository", .name = "harness/app", .actions = {"pull"}}};
  // Distribution allows 60 s of clock skew past exp, so "expired" means older than that.
  Result<std::string> expired = tokens.IssueToken("berth", access, std::chrono::seconds(-120));
  ASSERT_TRUE(expired) << expired.error().ToString();
  EXPECT_EQ(
      MustFetch(WithToken(registry->NewRequest("/v2/harness/app/tags/list"), *expired)).status,
      401);
  Result<std::string> fresh = tokens.IssueToken("berth", access, std::chrono::seconds(60));
  ASSERT_TRUE(fresh) << fresh.error().ToString();
  EXPECT_EQ(MustFetch(WithToken(registry->NewRequest("/v2/harness/app/tags/list"), *fresh)).status,
            404);
}

// A plain registry with one pushed blob, and a fault proxy in front of it.
class FaultProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = StartRegistry({});
    ASSERT_NE(registry_, nullptr);
    digest_ = PushBlob(*registry_, "harness/app", "", content_);
    ASSERT_FALSE(digest_.empty());
    Result<std::unique_ptr<FaultProxy>> proxy = FaultProxy::Start(registry_->host());
    ASSERT_TRUE(proxy) << proxy.error().ToString();
    proxy_ = std::move(*proxy);
  }

  std::string BlobPath() const { return "/v2/harness/app/blobs/" + digest_; }
  HttpFetchRequest ViaProxy(const std::string& path, std::string method = "GET") const {
    return {.method = std::move(method), .url = proxy_->url() + path};
  }
  int AddRule(FaultRule rule) {
    Result<int> id = proxy_->AddRule(std::move(rule));
    EXPECT_TRUE(id) << id.error().ToString();
    return id.value_or(0);
  }

  // The blob is long enough for byte-level faults to land mid-body.
  const std::string content_ = std::string(4000, 'x') + "the end of the harness test blob";
  std::unique_ptr<TestRegistry> registry_;
  std::unique_ptr<FaultProxy> proxy_;
  std::string digest_;
};

TEST_F(FaultProxyTest, PassesThroughWithoutRules) {
  HttpFetchResponse blob = MustFetch(ViaProxy(BlobPath()));
  EXPECT_EQ(blob.status, 200);
  EXPECT_EQ(Digest::Sha256Of(blob.body).ToString(), digest_);
  EXPECT_EQ(blob.Header("Docker-Content-Digest"), digest_);
}

TEST_F(FaultProxyTest, Injects503ThenLetsLaterRequestsThrough) {
  int rule = AddRule({.method = "GET",
                      .target_contains = "/blobs/",
                      .count = 1,
                      .action = FaultAction::Respond(503, {}, "injected")});
  HttpFetchResponse first = MustFetch(ViaProxy(BlobPath()));
  EXPECT_EQ(first.status, 503);
  EXPECT_EQ(first.body, "injected");
  HttpFetchResponse second = MustFetch(ViaProxy(BlobPath()));
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(second.body, content_);
  EXPECT_EQ(proxy_->RuleHits(rule), 1u);
  EXPECT_EQ(proxy_->RuleMatches(rule), 2u);
}

TEST_F(FaultProxyTest, TooManyRequestsCarriesRetryAfter) {
  AddRule({.target_contains = "/v2/", .action = FaultAction::RespondWithRetryAfter(429, 7)});
  HttpFetchResponse response = MustFetch(ViaProxy("/v2/"));
  EXPECT_EQ(response.status, 429);
  EXPECT_EQ(response.Header("Retry-After"), "7");
}

TEST_F(FaultProxyTest, NthRequestOnly) {
  AddRule({.method = "GET",
           .target_contains = "/blobs/",
           .first = 2,
           .count = 1,
           .action = FaultAction::Respond(500)});
  EXPECT_EQ(MustFetch(ViaProxy(BlobPath())).status, 200);
  EXPECT_EQ(MustFetch(ViaProxy(BlobPath())).status, 500);
  EXPECT_EQ(MustFetch(ViaProxy(BlobPath())).status, 200);
}

TEST_F(FaultProxyTest, DropAfterBytesGivesShortBody) {
  AddRule({.target_contains = "/blobs/", .action = FaultAction::DropAfterBytes(100)});
  // curl notices the short body and fails the transfer.
  Result<HttpFetchResponse> fetched = HttpFetch(ViaProxy(BlobPath()));
  ASSERT_FALSE(fetched);
  EXPECT_EQ(fetched.error().code(), ErrorCode::kUnavailable);

  // On the wire: the full Content-Length is announced, 100 bytes follow, then the close.
  Result<UniqueFd> socket = ConnectTcp("127.0.0.1", proxy_->port());
  ASSERT_TRUE(socket) << socket.error().ToString();
  ASSERT_TRUE(SendAll(socket->get(),
                      "GET " + BlobPath() + " HTTP/1.1\r\nHost: " + proxy_->host() + "\r\n\r\n"));
  SocketReader reader(socket->get());
  Result<std::optional<std::string>> head = reader.ReadHead();
  ASSERT_TRUE(head && head->has_value());
  Result<ResponseHead> parsed = ParseResponseHead(**head);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  EXPECT_EQ(FindHeader(parsed->headers, "Content-Length"), std::to_string(content_.size()));
  std::string body;
  while (true) {
    Result<std::string> piece = reader.ReadSome(64 * 1024);
    ASSERT_TRUE(piece) << piece.error().ToString();
    if (piece->empty()) break;
    body += *piece;
  }
  EXPECT_EQ(body, content_.substr(0, 100));
  ASSERT_EQ(proxy_->requests().size(), 2u);
  EXPECT_EQ(proxy_->requests()[1].body_bytes_sent, 100u);
}

TEST_F(FaultProxyTest, CorruptByteChangesDigestButNotLength) {
  AddRule({.target_contains = "/blobs/", .count = 1, .action = FaultAction::CorruptByteAt(4010)});
  HttpFetchResponse corrupted = MustFetch(ViaProxy(BlobPath()));
  EXPECT_EQ(corrupted.status, 200);
  ASSERT_EQ(corrupted.body.size(), content_.size());
  EXPECT_NE(Digest::Sha256Of(corrupted.body).ToString(), digest_);
  EXPECT_NE(corrupted.body[4010], content_[4010]);
  EXPECT_EQ(corrupted.body.substr(0, 4010), content_.substr(0, 4010));
  // The rule was for one request only.
  EXPECT_EQ(Digest::Sha256Of(MustFetch(ViaProxy(BlobPath())).body).ToString(), digest_);
}

TEST_F(FaultProxyTest, DelayAndSlowDrip) {
  AddRule({.method = "GET",
           .target_contains = "/v2/",
           .first = 1,
           .count = 1,
           .action = FaultAction::Delay(std::chrono::milliseconds(300))});
  AddRule({.target_contains = "/blobs/",
           .action = FaultAction::SlowDrip(1024, std::chrono::milliseconds(50))});
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(MustFetch(ViaProxy("/v2/")).status, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));

  start = std::chrono::steady_clock::now();
  HttpFetchResponse blob = MustFetch(ViaProxy(BlobPath()));
  // 4032 bytes in 1 KiB pieces: four pauses of 50 ms.
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(200));
  EXPECT_EQ(blob.body, content_);
}

TEST_F(FaultProxyTest, CountsRequestsPerPath) {
  for (int i = 0; i < 3; ++i) MustFetch(ViaProxy(BlobPath()));
  MustFetch(ViaProxy(BlobPath(), "HEAD"));
  MustFetch(ViaProxy("/v2/"));
  EXPECT_EQ(proxy_->RequestCount(), 5u);
  EXPECT_EQ(proxy_->RequestCount("GET", "/blobs/"), 3u);
  EXPECT_EQ(proxy_->RequestCount("", "/blobs/"), 4u);
  std::map<std::string, uint64_t> per_path = proxy_->RequestsPerPath();
  EXPECT_EQ(per_path["GET " + BlobPath()], 3u);
  EXPECT_EQ(per_path["HEAD " + BlobPath()], 1u);
  EXPECT_EQ(per_path["GET /v2/"], 1u);
  proxy_->ResetCounters();
  EXPECT_EQ(proxy_->RequestCount(), 0u);
}

TEST_F(FaultProxyTest, UploadsThroughTheProxy) {
  // The registry builds the upload Location from the Host header, so it points at the proxy.
  const std::string content = "pushed through the fault proxy";
  HttpFetchResponse started = MustFetch(ViaProxy("/v2/harness/app/blobs/uploads/", "POST"));
  ASSERT_EQ(started.status, 202);
  std::string location = started.Header("Location").value_or("");
  EXPECT_NE(location.find(proxy_->host()), std::string::npos) << location;
  std::string digest = Digest::Sha256Of(content).ToString();
  HttpFetchResponse finished =
      MustFetch({.method = "PUT", .url = location + "&digest=" + digest, .body = content});
  EXPECT_EQ(finished.status, 201) << finished.body;
  EXPECT_EQ(MustFetch(ViaProxy("/v2/harness/app/blobs/" + digest)).body, content);
  EXPECT_EQ(proxy_->RequestCount("PUT", "/blobs/uploads/"), 1u);
}

TEST(FaultProxyUpstreamTest, UnreachableUpstreamGives502) {
  Result<uint16_t> port = FreeLoopbackPort();
  ASSERT_TRUE(port);
  auto proxy = FaultProxy::Start("127.0.0.1:" + std::to_string(*port),
                                 {.upstream_timeout = std::chrono::seconds(2)});
  ASSERT_TRUE(proxy) << proxy.error().ToString();
  EXPECT_EQ(MustFetch({.url = (*proxy)->url() + "/v2/"}).status, 502);
}

}  // namespace
}  // namespace berth::testing
