#include "testing/jwt.h"

#include <gtest/gtest.h>

#include "berth/base/base64.h"
#include "berth/base/file_util.h"
#include "testing/test_pki.h"

namespace berth::testing {
namespace {

class JwtTest : public ::testing::Test {
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
  static TestPki* pki_;
};

TestPki* JwtTest::pki_ = nullptr;

TEST_F(JwtTest, SignsRs256WithX5cHeaderAndVerifies) {
  Result<JwtSigner> signer =
      JwtSigner::FromPemFiles(pki_->token_key_file(), pki_->token_cert_file());
  ASSERT_TRUE(signer) << signer.error().ToString();
  Result<std::string> token = signer->Sign({{"iss", "me"}, {"aud", "registry"}});
  ASSERT_TRUE(token) << token.error().ToString();

  Result<DecodedJwt> verified = VerifyJwt(*token, pki_->token_cert_file());
  ASSERT_TRUE(verified) << verified.error().ToString();
  EXPECT_EQ(verified->header["alg"], "RS256");
  EXPECT_EQ(verified->header["typ"], "JWT");
  EXPECT_EQ(verified->claims["iss"], "me");
  ASSERT_TRUE(verified->header["x5c"].is_array());
  ASSERT_EQ(verified->header["x5c"].size(), 1u);
  // x5c[0] is the DER of the signing certificate, i.e. the PEM body.
  Result<std::string> pem = ReadFile(pki_->token_cert_file());
  ASSERT_TRUE(pem);
  std::string pem_body;
  for (char c : *pem) {
    if (c != '\n') pem_body.push_back(c);
  }
  EXPECT_NE(pem_body.find(verified->header["x5c"][0].get<std::string>()), std::string::npos);
}

TEST_F(JwtTest, TamperedTokenDoesNotVerify) {
  Result<JwtSigner> signer =
      JwtSigner::FromPemFiles(pki_->token_key_file(), pki_->token_cert_file());
  ASSERT_TRUE(signer);
  Result<std::string> token = signer->Sign({{"sub", "alice"}});
  ASSERT_TRUE(token);
  size_t first = token->find('.');
  size_t second = token->find('.', first + 1);
  std::string forged = token->substr(0, first) + "." + Base64UrlEncode(R"({"sub":"mallory"})") +
                       token->substr(second);
  Result<DecodedJwt> verified = VerifyJwt(forged, pki_->token_cert_file());
  ASSERT_FALSE(verified);
  EXPECT_EQ(verified.error().code(), ErrorCode::kUnauthenticated);
  // Unverified decoding still reads it (that is what it is for).
  EXPECT_EQ(DecodeJwtUnverified(forged)->claims["sub"], "mallory");
}

TEST_F(JwtTest, RejectsNonRsaKeyAndMismatchedCertificate) {
  // The server key is ECDSA: not usable for RS256.
  Result<JwtSigner> ec = JwtSigner::FromPemFiles(pki_->server_key_file(), pki_->server_cert_file());
  ASSERT_FALSE(ec);
  EXPECT_EQ(ec.error().code(), ErrorCode::kInvalidArgument);
  Result<JwtSigner> mismatched =
      JwtSigner::FromPemFiles(pki_->token_key_file(), pki_->ca_cert_file());
  ASSERT_FALSE(mismatched);
  EXPECT_EQ(mismatched.error().code(), ErrorCode::kInvalidArgument);
  Result<JwtSigner> missing =
      JwtSigner::FromPemFiles(pki_->directory() / "nope.pem", pki_->token_cert_file());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST(DecodeJwtTest, RejectsMalformedTokens) {
  EXPECT_FALSE(DecodeJwtUnverified("only.two"));
  EXPECT_FALSE(DecodeJwtUnverified("a.b.c.d"));
  EXPECT_FALSE(DecodeJwtUnverified(Base64UrlEncode("[]") + "." + Base64UrlEncode("{}") + ".x"));
}

}  // namespace
}  // namespace berth::testing
