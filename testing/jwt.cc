#include "testing/jwt.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "berth/base/base64.h"
#include "berth/base/c_handle.h"
#include "berth/base/file_util.h"
#include "testing/test_pki.h"

namespace berth::testing {
namespace {

using UniqueKey = UniqueHandle<EVP_PKEY, EVP_PKEY_free>;
using UniqueX509 = UniqueHandle<X509, X509_free>;
using UniqueBio = UniqueHandle<BIO, BIO_free_all>;
using UniqueMdContext = UniqueHandle<EVP_MD_CTX, EVP_MD_CTX_free>;

Result<UniqueX509> LoadCertificate(const std::filesystem::path& cert_file) {
  BERTH_ASSIGN_OR_RETURN(std::string pem, ReadFile(cert_file));
  UniqueBio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  UniqueX509 cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    return Fail(ErrorCode::kInvalidArgument,
                OpenSslErrorText("parse certificate " + cert_file.string()));
  }
  return cert;
}

}  // namespace

struct JwtSigner::Key {
  UniqueKey pkey;
};

Result<JwtSigner> JwtSigner::FromPemFiles(const std::filesystem::path& key_file,
                                          const std::filesystem::path& cert_file) {
  BERTH_ASSIGN_OR_RETURN(std::string key_pem, ReadFile(key_file));
  UniqueBio key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  auto key = std::make_shared<Key>();
  key->pkey.reset(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!key->pkey) {
    return Fail(ErrorCode::kInvalidArgument,
                OpenSslErrorText("parse private key " + key_file.string()));
  }
  if (EVP_PKEY_get_base_id(key->pkey.get()) != EVP_PKEY_RSA) {
    return Fail(ErrorCode::kInvalidArgument,
                "token signing key " + key_file.string() + " is not RSA; RS256 needs an RSA key");
  }
  BERTH_ASSIGN_OR_RETURN(UniqueX509 cert, LoadCertificate(cert_file));
  if (X509_check_private_key(cert.get(), key->pkey.get()) != 1) {
    ERR_clear_error();
    return Fail(ErrorCode::kInvalidArgument,
                "certificate " + cert_file.string() + " does not match key " + key_file.string());
  }
  int der_length = i2d_X509(cert.get(), nullptr);
  if (der_length <= 0) return Fail(ErrorCode::kInternal, OpenSslErrorText("encode certificate"));
  std::string der(static_cast<size_t>(der_length), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  i2d_X509(cert.get(), &out);
  return JwtSigner(std::move(key), Base64Encode(der));
}

Result<std::string> JwtSigner::Sign(const nlohmann::json& claims) const {
  nlohmann::json header = {{"typ", "JWT"}, {"alg", "RS256"}, {"x5c", {cert_der_base64_}}};
  std::string signing_input = Base64UrlEncode(header.dump()) + "." + Base64UrlEncode(claims.dump());
  UniqueMdContext context(EVP_MD_CTX_new());
  if (!context ||
      EVP_DigestSignInit(context.get(), nullptr, EVP_sha256(), nullptr, key_->pkey.get()) != 1) {
    return Fail(ErrorCode::kInternal, OpenSslErrorText("EVP_DigestSignInit"));
  }
  size_t signature_length = 0;
  const auto* input = reinterpret_cast<const unsigned char*>(signing_input.data());
  if (EVP_DigestSign(context.get(), nullptr, &signature_length, input, signing_input.size()) != 1) {
    return Fail(ErrorCode::kInternal, OpenSslErrorText("EVP_DigestSign (size)"));
  }
  std::string signature(signature_length, '\0');
  if (EVP_DigestSign(context.get(), reinterpret_cast<unsigned char*>(signature.data()),
                     &signature_length, input, signing_input.size()) != 1) {
    return Fail(ErrorCode::kInternal, OpenSslErrorText("EVP_DigestSign"));
  }
  signature.resize(signature_length);
  return signing_input + "." + Base64UrlEncode(signature);
}

Result<DecodedJwt> DecodeJwtUnverified(std::string_view token) {
  size_t first = token.find('.');
  size_t second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument, "a JWT has three dot-separated parts");
  }
  BERTH_ASSIGN_OR_RETURN(std::string header_json, Base64UrlDecode(token.substr(0, first)));
  BERTH_ASSIGN_OR_RETURN(std::string claims_json,
                         Base64UrlDecode(token.substr(first + 1, second - first - 1)));
  DecodedJwt decoded;
  decoded.header = nlohmann::json::parse(header_json, nullptr, /*allow_exceptions=*/false);
  decoded.claims = nlohmann::json::parse(claims_json, nullptr, /*allow_exceptions=*/false);
  if (!decoded.header.is_object() || !decoded.claims.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "JWT header or claims are not JSON objects");
  }
  return decoded;
}

Result<DecodedJwt> VerifyJwt(std::string_view token, const std::filesystem::path& cert_file) {
  BERTH_ASSIGN_OR_RETURN(DecodedJwt decoded, DecodeJwtUnverified(token));
  if (decoded.header.value("alg", "") != "RS256") {
    return Fail(ErrorCode::kUnauthenticated, "JWT alg is not RS256");
  }
  size_t last_dot = token.rfind('.');
  std::string_view signing_input = token.substr(0, last_dot);
  BERTH_ASSIGN_OR_RETURN(std::string signature, Base64UrlDecode(token.substr(last_dot + 1)));
  BERTH_ASSIGN_OR_RETURN(UniqueX509 cert, LoadCertificate(cert_file));
  EVP_PKEY* public_key = X509_get0_pubkey(cert.get());
  UniqueMdContext context(EVP_MD_CTX_new());
  if (public_key == nullptr || !context ||
      EVP_DigestVerifyInit(context.get(), nullptr, EVP_sha256(), nullptr, public_key) != 1) {
    return Fail(ErrorCode::kInternal, OpenSslErrorText("EVP_DigestVerifyInit"));
  }
  int ok = EVP_DigestVerify(
      context.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
      reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size());
  if (ok != 1) {
    ERR_clear_error();
    return Fail(ErrorCode::kUnauthenticated, "JWT signature does not verify");
  }
  return decoded;
}

}  // namespace berth::testing
