#include "berth/registry/auth.h"

#include <gtest/gtest.h>

#include "berth/base/base64.h"
#include "berth/registry/fake_transport.h"

namespace berth::registry {
namespace {

TEST(CredentialsForHostTest, UsernamePasswordFirst) {
  CriAuthConfig auth{.username = "alice", .password = Secret("pw"), .auth = Secret("ignored")};
  Credentials credentials = CredentialsForHost(auth, "r.example").value();
  EXPECT_EQ(credentials.username, "alice");
  EXPECT_EQ(credentials.password.reveal(), "pw");
}

TEST(CredentialsForHostTest, ServerAddressRestrictsHost) {
  CriAuthConfig auth{.username = "alice",
                     .password = Secret("pw"),
                     .server_address = "https://r.example:5000/v2/"};
  EXPECT_EQ(CredentialsForHost(auth, "r.example:5000")->username, "alice");
  EXPECT_TRUE(CredentialsForHost(auth, "other.example")->anonymous());
  auth.server_address = "r.example:5000";
  EXPECT_EQ(CredentialsForHost(auth, "r.example:5000")->username, "alice");
  auth.server_address = "https://index.docker.io/v1/";
  EXPECT_EQ(CredentialsForHost(auth, "registry-1.docker.io")->username, "alice");
  EXPECT_EQ(CredentialsForHost(auth, "docker.io")->username, "alice");
}

TEST(CredentialsForHostTest, IdentityTokenThenAuthThenRegistryToken) {
  EXPECT_EQ(CredentialsForHost({.identity_token = Secret("rt")}, "h")->identity_token.reveal(),
            "rt");
  Credentials decoded =
      CredentialsForHost({.auth = Secret(Base64Encode(std::string("bob:pa:ss\0\0", 11)))}, "h")
          .value();
  EXPECT_EQ(decoded.username, "bob");
  EXPECT_EQ(decoded.password.reveal(), "pa:ss");  // split at the first ':', NULs trimmed
  EXPECT_EQ(CredentialsForHost({.registry_token = Secret("bt")}, "h")->registry_token.reveal(),
            "bt");
  EXPECT_TRUE(CredentialsForHost({}, "h")->anonymous());
}

TEST(CredentialsForHostTest, MalformedAuthIsClearAndSecretFree) {
  auto not_base64 = CredentialsForHost({.auth = Secret("not*base64!")}, "h");
  ASSERT_FALSE(not_base64);
  EXPECT_EQ(not_base64.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(not_base64.error().ToString().find("not*base64!"), std::string::npos);
  auto no_colon = CredentialsForHost({.auth = Secret(Base64Encode("hunter2"))}, "h");
  ASSERT_FALSE(no_colon);
  EXPECT_NE(no_colon.error().message().find("':'"), std::string::npos);
  EXPECT_EQ(no_colon.error().ToString().find("hunter2"), std::string::npos);
}

TEST(TokenResponseTest, Decodes) {
  Token token = ParseTokenResponse(R"({"token":"t1","expires_in":300})").value();
  EXPECT_EQ(token.access_token.reveal(), "t1");
  EXPECT_EQ(token.expires_in.count(), 300);
  token = ParseTokenResponse(R"({"access_token":"t2","refresh_token":"r"})").value();
  EXPECT_EQ(token.access_token.reveal(), "t2");
  EXPECT_EQ(token.refresh_token.reveal(), "r");
  EXPECT_EQ(token.expires_in.count(), 60);
  EXPECT_EQ(ParseTokenResponse(R"({"token":"t","expires_in":3})")->expires_in.count(), 3);
}

TEST(TokenResponseTest, Rejects) {
  EXPECT_EQ(ParseTokenResponse("nope").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseTokenResponse("{}").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseTokenResponse(R"({"token":"t","expires_in":"x"})").error().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseTokenResponse(std::string(kMaxTokenResponseBytes + 1, ' ')).error().code(),
            ErrorCode::kResourceExhausted);
}

class AuthorizerTest : public ::testing::Test {
 protected:
  Authorizer MakeAuthorizer(Credentials credentials) {
    return Authorizer(
        transport_, [credentials](std::string_view) { return credentials; },
        [](std::string_view) { return TlsOptions{}; }, [this] { return now_; });
  }
  HttpResponse Unauthorized(std::string challenge) {
    return HttpResponse{.status = 401, .headers = {{"www-authenticate", std::move(challenge)}}};
  }
  FakeTransport transport_;
  Authorizer::Clock::time_point now_ = Authorizer::Clock::time_point() + std::chrono::hours(1);
};

TEST_F(AuthorizerTest, BearerWithBasicCredentialsAndCache) {
  transport_.Respond("GET", "http://auth.test/token",
                     {.status = 200, .body = R"({"token":"tok-1","expires_in":100})"});
  transport_.Respond("GET", "http://auth.test/token",
                     {.status = 200, .body = R"({"token":"tok-2","expires_in":100})"});
  Authorizer authorizer = MakeAuthorizer({.username = "u", .password = Secret("p")});
  std::string scope = "repository:a/b:pull";
  EXPECT_FALSE(authorizer.Authorization("r.test", scope, CancelToken::Never()).value());
  ASSERT_TRUE(authorizer.OnUnauthorized(
      "r.test", scope, Unauthorized(R"(Bearer realm="http://auth.test/token",service="svc")"),
      CancelToken::Never()));
  auto header = authorizer.Authorization("r.test", scope, CancelToken::Never());
  ASSERT_TRUE(header && *header);
  EXPECT_EQ((*header)->reveal(), "Bearer tok-1");
  EXPECT_EQ(authorizer.tokens_fetched(), 1);

  auto requests = transport_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].url, "http://auth.test/token?service=svc&scope=repository%3Aa%2Fb%3Apull");
  ASSERT_EQ(requests[0].headers.size(), 1u);
  EXPECT_EQ(requests[0].headers[0].second, "Basic " + Base64Encode("u:p"));

  // Near expiry the token is fetched again, before any request fails.
  now_ += std::chrono::seconds(90);
  header = authorizer.Authorization("r.test", scope, CancelToken::Never());
  EXPECT_EQ((*header)->reveal(), "Bearer tok-2");
  EXPECT_EQ(authorizer.tokens_fetched(), 2);
}

TEST_F(AuthorizerTest, IdentityTokenUsesRefreshGrant) {
  transport_.Respond("POST", "http://auth.test/token",
                     {.status = 200, .body = R"({"access_token":"a","refresh_token":"r2"})"});
  Authorizer authorizer = MakeAuthorizer({.identity_token = Secret("r1")});
  ASSERT_TRUE(authorizer.OnUnauthorized(
      "r.test", "repository:x:pull",
      Unauthorized(R"(Bearer realm="http://auth.test/token",service="svc")"),
      CancelToken::Never()));
  auto requests = transport_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_NE(requests[0].body.find("grant_type=refresh_token"), std::string::npos);
  EXPECT_NE(requests[0].body.find("refresh_token=r1"), std::string::npos);
}

TEST_F(AuthorizerTest, RefusedNamesTheChallengeAndTheUserButNoSecret) {
  const std::string password = "p-9d1e-hunter2";
  Authorizer authorizer = MakeAuthorizer({.username = "u", .password = Secret(password)});
  HttpResponse basic = Unauthorized(R"(Basic realm="the-realm")");
  Error refused = authorizer.Refused("r.test", "repository:a:pull", basic);
  EXPECT_EQ(refused.code(), ErrorCode::kUnauthenticated);
  std::string text = refused.ToString();
  EXPECT_NE(text.find(R"(registry r.test refused the credentials of user "u")"), std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(Basic realm="the-realm")"), std::string::npos) << text;
  EXPECT_EQ(text.find(password), std::string::npos) << text;
  EXPECT_EQ(text.find(Base64Encode("u:" + password)), std::string::npos) << text;

  Error anonymous = MakeAuthorizer({}).Refused("r.test", "repository:a:pull", basic);
  EXPECT_NE(anonymous.ToString().find(R"(requires credentials (Basic realm="the-realm"))"),
            std::string::npos)
      << anonymous.ToString();

  Error bearer =
      authorizer.Refused("r.test", "repository:a:pull",
                         Unauthorized(R"(Bearer realm="https://auth.test/token",service="svc")"));
  EXPECT_NE(bearer.ToString().find(
                R"(refused the token of user "u" for repository:a:pull (HTTP 401, Bearer )"
                R"(realm="https://auth.test/token" service="svc"))"),
            std::string::npos)
      << bearer.ToString();
}

TEST_F(AuthorizerTest, BasicChallenge) {
  Authorizer authorizer = MakeAuthorizer({.username = "u", .password = Secret("p")});
  ASSERT_TRUE(authorizer.OnUnauthorized("r.test", "s", Unauthorized(R"(Basic realm="R")"),
                                        CancelToken::Never()));
  EXPECT_EQ((*authorizer.Authorization("r.test", "s", CancelToken::Never()).value()).reveal(),
            "Basic " + Base64Encode("u:p"));
  Authorizer anonymous = MakeAuthorizer({});
  auto refused = anonymous.OnUnauthorized("r.test", "s", Unauthorized(R"(Basic realm="R")"),
                                          CancelToken::Never());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kUnauthenticated);
}

TEST_F(AuthorizerTest, RefusedCredentialsAreUnauthenticatedWithoutSecrets) {
  transport_.Respond("GET", "http://auth.test/token", {.status = 401, .body = "denied"});
  Authorizer authorizer = MakeAuthorizer({.username = "mallory", .password = Secret("s3cr3t")});
  auto result = authorizer.OnUnauthorized("r.test", "repository:x:pull",
                                          Unauthorized(R"(Bearer realm="http://auth.test/token")"),
                                          CancelToken::Never());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kUnauthenticated);
  EXPECT_NE(result.error().message().find("mallory"), std::string::npos);
  EXPECT_EQ(result.error().ToString().find("s3cr3t"), std::string::npos);
}

TEST_F(AuthorizerTest, RegistryTokenIsSentAsIs) {
  Authorizer authorizer = MakeAuthorizer({.registry_token = Secret("rt")});
  EXPECT_EQ((*authorizer.Authorization("r.test", "s", CancelToken::Never()).value()).reveal(),
            "Bearer rt");
  EXPECT_TRUE(transport_.requests().empty());
}

}  // namespace
}  // namespace berth::registry
