#include "testing/token_server.h"

#include <gtest/gtest.h>

#include "testing/http_fetch.h"
#include "testing/http_wire.h"
#include "testing/test_pki.h"

namespace berth::testing {
namespace {

class TokenServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Result<std::unique_ptr<TestPki>> pki = TestPki::Create();
    ASSERT_TRUE(pki) << pki.error().ToString();
    pki_ = std::move(*pki).release();
  }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }

  void StartServer(TokenServerOptions options = {}) {
    options.signing_key_file = pki_->token_key_file();
    options.signing_cert_file = pki_->token_cert_file();
    if (options.users.empty()) {
      options.users = {
          {.username = "alice", .password = Secret("wonderland")},
          {.username = "bob", .password = Secret("builder"), .repositories = {"bob/*", "shared"}}};
    }
    Result<std::unique_ptr<TokenServer>> server = TokenServer::Start(std::move(options));
    ASSERT_TRUE(server) << server.error().ToString();
    server_ = std::move(*server);
  }

  HttpFetchResponse Get(const std::string& query, const std::string& user = "",
                        const std::string& password = "") {
    Result<HttpFetchResponse> response = HttpFetch(
        {.url = server_->realm() + "?" + query, .username = user, .password = Secret(password)});
    EXPECT_TRUE(response) << response.error().ToString();
    return response ? *response : HttpFetchResponse{};
  }

  HttpFetchResponse Post(const std::string& form) {
    Result<HttpFetchResponse> response =
        HttpFetch({.method = "POST",
                   .url = server_->realm(),
                   .headers = {{"Content-Type", "application/x-www-form-urlencoded"}},
                   .body = form});
    EXPECT_TRUE(response) << response.error().ToString();
    return response ? *response : HttpFetchResponse{};
  }

  // Verifies the token in a response's `field` and returns its claims.
  nlohmann::json Claims(const HttpFetchResponse& response, const char* field = "token") {
    nlohmann::json body = nlohmann::json::parse(response.body, nullptr, false);
    if (!body.is_object() || !body.contains(field)) {
      ADD_FAILURE() << "no " << field << " in " << response.body;
      return {};
    }
    Result<DecodedJwt> jwt = VerifyJwt(body[field].get<std::string>(), pki_->token_cert_file());
    EXPECT_TRUE(jwt) << jwt.error().ToString();
    return jwt ? jwt->claims : nlohmann::json();
  }

  static TestPki* pki_;
  std::unique_ptr<TokenServer> server_;
};

TestPki* TokenServerTest::pki_ = nullptr;

TEST_F(TokenServerTest, GrantsRequestedScopesToAuthenticatedUser) {
  StartServer();
  HttpFetchResponse response =
      Get("service=berth-test-registry&scope=" + UrlEncode("repository:team/app:pull,push") +
              "&scope=" + UrlEncode("registry:catalog:*"),
          "alice", "wonderland");
  ASSERT_EQ(response.status, 200) << response.body;
  nlohmann::json claims = Claims(response);
  EXPECT_EQ(claims["iss"], "berth-test-token-issuer");
  EXPECT_EQ(claims["aud"], "berth-test-registry");
  EXPECT_EQ(claims["sub"], "alice");
  EXPECT_EQ(claims["exp"].get<int64_t>() - claims["iat"].get<int64_t>(), 300);
  EXPECT_LE(claims["nbf"].get<int64_t>(), claims["iat"].get<int64_t>());
  EXPECT_FALSE(claims["jti"].get<std::string>().empty());
  nlohmann::json expected_access = nlohmann::json::parse(R"([
      {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
      {"type": "registry", "name": "catalog", "actions": ["*"]}])");
  EXPECT_EQ(claims["access"], expected_access);
  nlohmann::json body = nlohmann::json::parse(response.body);
  EXPECT_EQ(body["expires_in"], 300);
  EXPECT_EQ(body["token"], body["access_token"]);
  EXPECT_EQ(body["issued_at"].get<std::string>().size(), 20u);  // 2024-01-02T03:04:05Z
  EXPECT_FALSE(body.contains("refresh_token"));
  EXPECT_EQ(server_->stats().tokens_issued, 1u);
}

TEST_F(TokenServerTest, RestrictsUsersToTheirRepositories) {
  StartServer();
  HttpFetchResponse response = Get("scope=" + UrlEncode("repository:bob/app:pull") +
                                       "&scope=" + UrlEncode("repository:alice/app:pull") +
                                       "&scope=" + UrlEncode("repository:shared:push"),
                                   "bob", "builder");
  ASSERT_EQ(response.status, 200);
  nlohmann::json access = Claims(response)["access"];
  ASSERT_EQ(access.size(), 2u) << access.dump();
  EXPECT_EQ(access[0]["name"], "bob/app");
  EXPECT_EQ(access[1]["name"], "shared");
}

TEST_F(TokenServerTest, AnonymousGetsPullOnPublicRepositoriesOnly) {
  StartServer({.public_repositories = {"library/busybox"}});
  HttpFetchResponse response = Get("scope=" + UrlEncode("repository:library/busybox:pull,push") +
                                   "&scope=" + UrlEncode("repository:private/app:pull"));
  ASSERT_EQ(response.status, 200);
  nlohmann::json claims = Claims(response);
  EXPECT_EQ(claims["sub"], "");
  ASSERT_EQ(claims["access"].size(), 1u);
  EXPECT_EQ(claims["access"][0]["actions"], nlohmann::json::array({"pull"}));
  EXPECT_EQ(server_->stats().anonymous_requests, 1u);
}

TEST_F(TokenServerTest, RefusesAnonymousWhenDisabledAndWrongPasswords) {
  StartServer({.allow_anonymous = false});
  HttpFetchResponse anonymous = Get("scope=repository:x:pull");
  EXPECT_EQ(anonymous.status, 401);
  EXPECT_NE(anonymous.Header("WWW-Authenticate").value_or("").find("Basic"), std::string::npos);
  EXPECT_EQ(Get("scope=repository:x:pull", "alice", "wrong").status, 401);
  EXPECT_EQ(Get("scope=repository:x:pull", "nobody", "wonderland").status, 401);
  EXPECT_EQ(Get("service=other-service", "alice", "wonderland").status, 400);
  TokenServerStats stats = server_->stats();
  EXPECT_EQ(stats.rejected_requests, 4u);
  EXPECT_EQ(stats.get_requests, 4u);
  EXPECT_EQ(stats.tokens_issued, 0u);
}

TEST_F(TokenServerTest, OfflineGetReturnsRefreshToken) {
  StartServer();
  HttpFetchResponse response =
      Get("offline_token=true&client_id=test&scope=repository:a:pull", "alice", "wonderland");
  ASSERT_EQ(response.status, 200);
  nlohmann::json body = nlohmann::json::parse(response.body);
  ASSERT_TRUE(body.contains("refresh_token"));
  HttpFetchResponse refreshed =
      Post("grant_type=refresh_token&client_id=test&refresh_token=" +
           body["refresh_token"].get<std::string>() + "&scope=repository%3Aa%3Apull");
  ASSERT_EQ(refreshed.status, 200) << refreshed.body;
  EXPECT_EQ(Claims(refreshed, "access_token")["sub"], "alice");
}

TEST_F(TokenServerTest, PasswordGrantWithSpaceSeparatedScopes) {
  StartServer();
  HttpFetchResponse response = Post(
      "grant_type=password&client_id=test&username=alice&password=wonderland&access_type=offline"
      "&scope=" +
      UrlEncode("repository:a:pull repository:b:push"));
  ASSERT_EQ(response.status, 200) << response.body;
  nlohmann::json body = nlohmann::json::parse(response.body);
  EXPECT_TRUE(body.contains("refresh_token"));
  EXPECT_EQ(body["scope"], "repository:a:pull repository:b:push");
  EXPECT_EQ(Claims(response, "access_token")["access"].size(), 2u);
  EXPECT_EQ(server_->requested_scopes(),
            (std::vector<std::string>{"repository:a:pull", "repository:b:push"}));

  // Without access_type=offline there is no refresh token.
  HttpFetchResponse online =
      Post("grant_type=password&client_id=test&username=alice&password=wonderland");
  ASSERT_EQ(online.status, 200);
  EXPECT_FALSE(nlohmann::json::parse(online.body).contains("refresh_token"));
  EXPECT_EQ(server_->stats().password_grants, 2u);
  EXPECT_EQ(server_->stats().refresh_tokens_issued, 1u);
}

TEST_F(TokenServerTest, RejectsBadGrants) {
  StartServer();
  EXPECT_EQ(Post("grant_type=password&username=alice&password=wonderland").status, 400);
  EXPECT_EQ(Post("grant_type=magic&client_id=x").status, 400);
  EXPECT_EQ(Post("grant_type=refresh_token&client_id=x&refresh_token=nope").status, 401);
  EXPECT_EQ(Post("grant_type=password&client_id=x&username=alice&password=no").status, 401);
  EXPECT_EQ(server_->stats().rejected_requests, 4u);
}

TEST_F(TokenServerTest, LifetimeIsAdjustableAtRunTime) {
  StartServer({.token_lifetime = std::chrono::seconds(3)});
  HttpFetchResponse response = Get("scope=repository:a:pull", "alice", "wonderland");
  EXPECT_EQ(nlohmann::json::parse(response.body)["expires_in"], 3);
  server_->set_token_lifetime(std::chrono::seconds(60));
  response = Get("scope=repository:a:pull", "alice", "wonderland");
  EXPECT_EQ(nlohmann::json::parse(response.body)["expires_in"], 60);
  nlohmann::json claims = Claims(response);
  EXPECT_EQ(claims["exp"].get<int64_t>() - claims["iat"].get<int64_t>(), 60);
}

TEST_F(TokenServerTest, IssueTokenCanMintExpiredTokens) {
  StartServer();
  Result<std::string> token =
      server_->IssueToken("alice", {{.type = "repository", .name = "a", .actions = {"pull"}}},
                          std::chrono::seconds(-120));
  ASSERT_TRUE(token) << token.error().ToString();
  Result<DecodedJwt> jwt = VerifyJwt(*token, pki_->token_cert_file());
  ASSERT_TRUE(jwt);
  EXPECT_LT(jwt->claims["exp"].get<int64_t>(), jwt->claims["iat"].get<int64_t>());
  EXPECT_LT(jwt->claims["nbf"].get<int64_t>(), jwt->claims["exp"].get<int64_t>());
}

TEST(ParseScopeTest, SplitsTypeNameActions) {
  Result<TokenAccess> scope = ParseScope("repository:library/busybox:pull,push");
  ASSERT_TRUE(scope);
  EXPECT_EQ(scope->type, "repository");
  EXPECT_EQ(scope->name, "library/busybox");
  EXPECT_EQ(scope->actions, (std::vector<std::string>{"pull", "push"}));
  EXPECT_EQ(ParseScope("repository:host:5000/app:pull")->name, "host:5000/app");
  EXPECT_FALSE(ParseScope("repository:nothing"));
}

}  // namespace
}  // namespace berth::testing
