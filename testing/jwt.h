// File: testing/jwt.h
//
// Minimal JSON Web Token support for the test token server: RS256 signing (EVP_DigestSign) with
// an x5c header, as Docker Distribution 2.8 verifies it, plus decoding and verification for
// tests.
//
// How Distribution 2.8 (registry/auth/token/token.go) checks a token: it looks for the signing
// key in the header in this order: "x5c" (a certificate chain, verified against the
// auth.token.rootcertbundle pool; a self-signed certificate in that bundle is accepted as its
// own chain), then "jwk", then "kid" (interpreted as the libtrust fingerprint of a key in the
// bundle). We send "x5c" only. It then requires iss to be the configured issuer, aud to equal
// the configured service, and now to be within [nbf - 60 s, exp + 60 s]: an "expired" token is
// refused only 60 seconds after its exp claim.
//
// Thread safety: a JwtSigner may be used by several threads at once.
#pragma once

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "berth/base/result.h"

namespace berth::testing {

class JwtSigner {
 public:
  // Loads a PEM private key (RSA) and the PEM certificate of its public key. kNotFound if a file
  // is missing, kInvalidArgument if it does not parse or the key does not match the certificate.
  static Result<JwtSigner> FromPemFiles(const std::filesystem::path& key_file,
                                        const std::filesystem::path& cert_file);

  // Returns the compact serialisation header.claims.signature, where the header is
  // {"typ":"JWT","alg":"RS256","x5c":["<base64 DER certificate>"]}.
  Result<std::string> Sign(const nlohmann::json& claims) const;

 private:
  struct Key;
  JwtSigner(std::shared_ptr<Key> key, std::string cert_der_base64)
      : key_(std::move(key)), cert_der_base64_(std::move(cert_der_base64)) {}

  std::shared_ptr<Key> key_;
  std::string cert_der_base64_;
};

struct DecodedJwt {
  nlohmann::json header;
  nlohmann::json claims;
};

// Splits and decodes a compact JWT without checking the signature. kInvalidArgument if it is not
// three base64url parts of which the first two are JSON objects.
Result<DecodedJwt> DecodeJwtUnverified(std::string_view token);

// Decodes the token and checks its RS256 signature against the public key in the PEM
// certificate `cert_file`. kUnauthenticated if the signature does not verify or alg is not RS256.
// Claims (exp, aud, …) are not checked.
Result<DecodedJwt> VerifyJwt(std::string_view token, const std::filesystem::path& cert_file);

}  // namespace berth::testing
