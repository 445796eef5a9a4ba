// File: testing/test_pki.h
//
// TestPki generates, with the OpenSSL C API, the key material a TLS- and token-enabled test
// registry needs, and writes it as PEM files into its own TempDir:
//
//   ca.pem / ca-key.pem                   a CA (basicConstraints CA:TRUE, keyCertSign)
//   server.pem / server-key.pem           signed by the CA; SAN IP:127.0.0.1, IP:::1,
//                                         DNS:localhost (configurable); serverAuth
//   client.pem / client-key.pem           signed by the CA; CN "berth-test-client"; clientAuth
//   token-signing.pem / token-signing-key.pem
//                                         a self-signed RSA-2048 certificate and key for RS256
//                                         JWTs; the registry's auth.token.rootcertbundle
//
// TLS keys are ECDSA P-256 (fast to generate); the token key is RSA because the token server
// signs RS256. Certificates are valid from one hour ago (clock skew) for 30 days. Private keys
// are unencrypted PKCS#8. Each TestPki is a fresh, unrelated PKI, so a second one serves as the
// "untrusted CA" in negative tests.
//
// Thread safety: immutable after Create(); may be shared between threads.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "berth/base/result.h"
#include "testing/temp_dir.h"

namespace berth::testing {

struct TestPkiOptions {
  // Subject alternative names of the server certificate.
  std::vector<std::string> server_dns_names = {"localhost"};
  std::vector<std::string> server_ip_addresses = {"127.0.0.1", "::1"};
  // Common name of the client certificate.
  std::string client_common_name = "berth-test-client";
};

class TestPki {
 public:
  // Generates all keys and certificates. Returns kInternal with OpenSSL's error text if any
  // OpenSSL call fails, or an errno error if the files cannot be written. Takes ~100 ms (the RSA
  // key dominates).
  static Result<std::unique_ptr<TestPki>> Create(const TestPkiOptions& options = {});

  const std::filesystem::path& directory() const { return dir_.path(); }
  std::filesystem::path ca_cert_file() const { return dir_.Join("ca.pem"); }
  std::filesystem::path ca_key_file() const { return dir_.Join("ca-key.pem"); }
  std::filesystem::path server_cert_file() const { return dir_.Join("server.pem"); }
  std::filesystem::path server_key_file() const { return dir_.Join("server-key.pem"); }
  std::filesystem::path client_cert_file() const { return dir_.Join("client.pem"); }
  std::filesystem::path client_key_file() const { return dir_.Join("client-key.pem"); }
  std::filesystem::path token_cert_file() const { return dir_.Join("token-signing.pem"); }
  std::filesystem::path token_key_file() const { return dir_.Join("token-signing-key.pem"); }

 private:
  explicit TestPki(TempDir dir) : dir_(std::move(dir)) {}

  TempDir dir_;
};

// The text of OpenSSL's error queue (and clears it), for error messages: "what: <errors>".
std::string OpenSslErrorText(std::string_view what);

}  // namespace berth::testing
