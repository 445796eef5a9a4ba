#include "berth/base/redact.h"

#include <gtest/gtest.h>

namespace berth {
namespace {

void ExpectHidden(std::string_view input, std::string_view secret) {
  std::string out = RedactSecrets(input);
  EXPECT_EQ(out.find(secret), std::string::npos) << "input: " << input << "\noutput: " << out;
  EXPECT_NE(out.find(kRedacted), std::string::npos) << out;
}

TEST(RedactTest, AuthorizationHeaders) {
  ExpectHidden("Authorization: Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy");
  ExpectHidden("authorization: Bearer eyJhbGciOi.xx.yy\r\nHost: a", "eyJhbGciOi");
  ExpectHidden("Proxy-Authorization: Basic Zm9vOmJhcg==", "Zm9vOmJhcg");
  ExpectHidden("got Bearer tok123 back", "tok123");
}

TEST(RedactTest, ChallengesAreNotCredentials) {
  // A WWW-Authenticate challenge names where to log in; its realm stays readable.
  EXPECT_EQ(RedactSecrets(R"(challenge Basic realm="berth-test-registry")"),
            R"(challenge Basic realm="berth-test-registry")");
  EXPECT_EQ(RedactSecrets("Bearer realm=https://auth.test/token,service=registry.test"),
            "Bearer realm=https://auth.test/token,service=registry.test");
  // Credentials that merely look alike are still hidden.
  ExpectHidden("Authorization: Basic realm=", "realm=");
  ExpectHidden("sent Basic cmVhbG09", "cmVhbG09");
  ExpectHidden("sent Bearer realm==", "realm==");
}

TEST(RedactTest, UrlUserinfoAndQuery) {
  ExpectHidden("GET https://alice:hunter2@registry.local/v2/", "hunter2");
  ExpectHidden("redirected to http://127.0.0.1:9/blob?X-Amz-Signature=deadbeef&x=1", "deadbeef");
  std::string out = RedactSecrets("GET http://127.0.0.1:5000/v2/library/busybox/manifests/latest");
  EXPECT_EQ(out, "GET http://127.0.0.1:5000/v2/library/busybox/manifests/latest");
}

TEST(RedactTest, SecretNamedKeys) {
  ExpectHidden("password=hunter2 user=bob", "hunter2");
  ExpectHidden(R"({"token":"abc.def","expires_in":60})", "abc.def");
  ExpectHidden(R"({"refresh_token": "r-123"})", "r-123");
  ExpectHidden("identitytoken: zzz", "zzz");
  ExpectHidden("auth=dXNlcjpw", "dXNlcjpw");
  EXPECT_NE(RedactSecrets("user=bob").find("bob"), std::string::npos);
  EXPECT_NE(RedactSecrets(R"({"expires_in":60})").find("60"), std::string::npos);
}

TEST(RedactTest, PlainTextUntouched) {
  std::string text = "pull docker.io/library/busybox:latest failed: manifest unknown";
  EXPECT_EQ(RedactSecrets(text), text);
  EXPECT_EQ(RedactSecrets(""), "");
  EXPECT_EQ(RedactSecrets("author=Jane"), "author=Jane");
}

TEST(RedactTest, KeyNames) {
  EXPECT_TRUE(IsSecretKey("password"));
  EXPECT_TRUE(IsSecretKey("Authorization"));
  EXPECT_TRUE(IsSecretKey("registry_token"));
  EXPECT_TRUE(IsSecretKey("sig"));
  EXPECT_FALSE(IsSecretKey("signal"));
  EXPECT_FALSE(IsSecretKey("ref"));
  EXPECT_FALSE(IsSecretKey("author"));
  EXPECT_FALSE(IsSecretKey("auth.toml"));
  EXPECT_TRUE(IsSecretKey("configs.r.auth.password"));
  EXPECT_EQ(RedactSecrets("/etc/berth/auth.toml:3:1: bad value"),
            "/etc/berth/auth.toml:3:1: bad value");
}

TEST(RedactTest, SecretFormatsAsRedacted) {
  Secret secret("hunter2");
  EXPECT_EQ(fmt::format("{}", secret), "<redacted>");
  EXPECT_EQ(secret.reveal(), "hunter2");
}

}  // namespace
}  // namespace berth
