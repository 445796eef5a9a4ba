// File: testing/test_registry.h
//
// TestRegistry runs a real Docker Distribution registry (Debian's docker-registry 2.8,
// /usr/bin/docker-registry) on a free 127.0.0.1 port for integration tests, with a generated
// config and everything it needs in a private TempDir: filesystem storage, TLS material
// (TestPki), an htpasswd file, or a TokenServer.
//
// Modes:
//   kPlainHttp      http://, no auth.
//   kTls            https:// with a server certificate from the generated CA (ca_file()).
//   kTlsClientCert  kTls, and the registry requires a client certificate signed by the same CA
//                   (client_cert_file()/client_key_file()); the TLS handshake fails without it.
//   kBasicAuth      htpasswd (bcrypt) auth for username()/password(); 401 with
//                   `WWW-Authenticate: Basic realm="<realm>"` otherwise.
//   kTokenAuth      Docker token auth against an owned TokenServer (token_server()); 401 with
//                   `WWW-Authenticate: Bearer realm="<token url>",service="<service>"` otherwise.
// kBasicAuth and kTokenAuth serve plain HTTP unless `auth_over_tls` is set.
//
// Start() returns once GET /v2/ answers. Stop() (and the destructor) stops the registry
// process (and token server); the TempDir, with storage and logs, goes with the object. The
// registry's output is kept in log_file(); print ReadLog() when a test fails:
//
//   BERTH_ASSIGN_OR_RETURN(auto registry, TestRegistry::Start({.mode = TestRegistryMode::kTls}));
//   HttpFetchRequest request = registry->NewRequest("/v2/");  // TLS settings filled in
//   ... EXPECT_EQ(HttpFetch(request)->status, 200) << registry->ReadLog();
//
// Thread safety: accessors may be called from any thread; Start/Stop/Restart from one thread
// (the one that outlives the registry, see ChildProcess).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "berth/base/redact.h"
#include "berth/base/result.h"
#include "testing/child_process.h"
#include "testing/http_fetch.h"
#include "testing/secret_sentinel.h"
#include "testing/temp_dir.h"
#include "testing/test_pki.h"
#include "testing/token_server.h"

namespace berth::testing {

enum class TestRegistryMode { kPlainHttp, kTls, kTlsClientCert, kBasicAuth, kTokenAuth };

struct TestRegistryOptions {
  TestRegistryMode mode = TestRegistryMode::kPlainHttp;
  // kBasicAuth / kTokenAuth: serve HTTPS (as kTls) instead of plain HTTP.
  bool auth_over_tls = false;
  // The registry's log.level: "error", "warn", "info" or "debug".
  std::string log_level = "info";
  // storage.delete.enabled (DELETE of manifests and blobs).
  bool enable_delete = true;
  // compatibility.schema1.enabled: accept pushes of schema1 manifests.
  bool enable_schema1 = false;
  // kBasicAuth: the htpasswd user. kTokenAuth: the token server's user when token.users is empty.
  std::string username = "berth";
  // A sentinel (secret_sentinel.h): the hygiene checker fails a test where it leaks.
  Secret password = Secret(SentinelSecret("registry-password"));
  // kBasicAuth: auth.htpasswd.realm.
  std::string realm = "berth-test-registry";
  // kTokenAuth: the token server. signing_key_file/signing_cert_file default to the generated
  // PKI; users default to {username, password} with access to every repository.
  TokenServerOptions token;
  // Storage root; empty = "<temp dir>/storage". Give the same directory to a second registry to
  // share content.
  std::filesystem::path storage_directory;
  // Raw YAML appended to the generated config (top-level sections such as "proxy:").
  std::string extra_config;
  // How long Start() waits for /v2/ to answer.
  std::chrono::milliseconds start_timeout = std::chrono::seconds(20);
  std::filesystem::path registry_binary = "/usr/bin/docker-registry";
};

class TestRegistry {
 public:
  // Generates PKI/htpasswd/token server as the mode needs, writes the config, starts the
  // registry on a free port and waits until /v2/ answers. If the port was taken in the meantime
  // it retries on a new one. Errors: kNotFound if the binary is missing (install the Debian
  // package docker-registry), kDeadlineExceeded if /v2/ never answered, kUnavailable if the
  // registry exited (the message carries the end of its log).
  static Result<std::unique_ptr<TestRegistry>> Start(TestRegistryOptions options = {});

  TestRegistry(const TestRegistry&) = delete;
  TestRegistry& operator=(const TestRegistry&) = delete;
  ~TestRegistry();  // Stop()s.

  // Stops the registry process (SIGTERM, SIGKILL after 5 s) and the token server. Idempotent.
  void Stop();
  // Stops the registry process only and starts it again with the same config, port and storage
  // (the token server keeps running). Waits for /v2/ like Start().
  Result<void> Restart();
  // Kills the registry process with SIGKILL (a crash), without restarting it.
  void Kill();

  TestRegistryMode mode() const { return options_.mode; }
  bool tls() const { return tls_; }
  uint16_t port() const { return port_; }
  // "127.0.0.1:PORT".
  std::string host() const;
  // "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT".
  std::string url() const;

  // TLS material; empty paths when the mode does not use TLS.
  std::filesystem::path ca_file() const;
  std::filesystem::path client_cert_file() const;
  std::filesystem::path client_key_file() const;
  // The PKI (null for plain HTTP without token auth).
  const TestPki* pki() const { return pki_.get(); }

  // kBasicAuth (and kTokenAuth's default user) credentials.
  const std::string& username() const { return options_.username; }
  const Secret& password() const { return options_.password; }
  // kTokenAuth only; null otherwise.
  TokenServer* token_server() const { return token_server_.get(); }

  const std::filesystem::path& storage_directory() const { return storage_directory_; }
  std::filesystem::path config_file() const { return dir_.Join("config.yml"); }
  std::filesystem::path log_file() const { return dir_.Join("registry.log"); }
  // The registry's log so far (stdout and stderr), for failure messages.
  std::string ReadLog() const;

  // A request for url() + `path` with this registry's TLS settings (CA, client certificate)
  // filled in; no credentials.
  HttpFetchRequest NewRequest(std::string_view path, std::string method = "GET") const;

 private:
  TestRegistry(TestRegistryOptions options, TempDir dir)
      : options_(std::move(options)), dir_(std::move(dir)) {}
  Result<void> Prepare();
  Result<void> WriteConfig() const;
  // Starts the process on port_ and waits for /v2/. kAlreadyExists if the port was taken.
  Result<void> Launch();

  TestRegistryOptions options_;
  TempDir dir_;
  bool tls_ = false;
  uint16_t port_ = 0;
  std::filesystem::path storage_directory_;
  std::string http_secret_;
  std::unique_ptr<TestPki> pki_;
  std::unique_ptr<TokenServer> token_server_;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace berth::testing
