#include "testing/test_registry.h"

#include <openssl/rand.h>
#include <unistd.h>

#include <thread>

#include "berth/base/file_util.h"
#include "testing/net_util.h"

namespace berth::testing {
namespace {

constexpr int kPortAttempts = 5;

// A YAML double-quoted scalar.
std::string Quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string RandomSecret() {
  unsigned char bytes[24];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return "berth-test-http-secret";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char b : bytes) {
    hex.push_back(kHex[b >> 4]);
    hex.push_back(kHex[b & 15]);
  }
  return hex;
}

std::string Tail(const std::string& text, size_t max_bytes = 4000) {
  if (text.size() <= max_bytes) return text;
  return "…" + text.substr(text.size() - max_bytes);
}

bool IsAuthMode(TestRegistryMode mode) {
  return mode == TestRegistryMode::kBasicAuth || mode == TestRegistryMode::kTokenAuth;
}

}  // namespace

Result<std::unique_ptr<TestRegistry>> TestRegistry::Start(TestRegistryOptions options) {
  BERTH_ASSIGN_OR_RETURN(TempDir dir, TempDir::Create("registry"));
  auto registry =
      std::unique_ptr<TestRegistry>(new TestRegistry(std::move(options), std::move(dir)));
  BERTH_RETURN_IF_ERROR(registry->Prepare());
  Error last(ErrorCode::kInternal, "not started");
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    BERTH_ASSIGN_OR_RETURN(registry->port_, FreeLoopbackPort());
    BERTH_RETURN_IF_ERROR(registry->WriteConfig());
    Result<void> launched = registry->Launch();
    if (launched) return registry;
    last = launched.error();
    // Another process took the port between FreeLoopbackPort() and the registry's bind: try a
    // new one. Anything else is a real failure.
    if (last.code() != ErrorCode::kAlreadyExists) break;
  }
  return Fail(std::move(last).WithContext("start docker-registry"));
}

Result<void> TestRegistry::Prepare() {
  const TestRegistryMode mode = options_.mode;
  tls_ = mode == TestRegistryMode::kTls || mode == TestRegistryMode::kTlsClientCert ||
         (IsAuthMode(mode) && options_.auth_over_tls);
  if (::access(options_.registry_binary.c_str(), X_OK) != 0) {
    return Fail(ErrorCode::kNotFound, options_.registry_binary.string() +
                                          " is not installed; install the Debian package "
                                          "docker-registry (scripts/setup.sh)");
  }
  storage_directory_ =
      options_.storage_directory.empty() ? dir_.Join("storage") : options_.storage_directory;
  BERTH_RETURN_IF_ERROR(MakeDirectories(storage_directory_));
  http_secret_ = RandomSecret();
  if (tls_ || mode == TestRegistryMode::kTokenAuth) {
    BERTH_ASSIGN_OR_RETURN(pki_, TestPki::Create());
  }

  if (mode == TestRegistryMode::kBasicAuth) {
    // Distribution accepts only bcrypt entries; htpasswd -B writes them (cost 5 keeps it fast).
    BERTH_ASSIGN_OR_RETURN(
        auto htpasswd, ChildProcess::Start({.argv = {"htpasswd", "-B", "-C", "5", "-b", "-c",
                                                     dir_.Join("htpasswd").string(),
                                                     options_.username, options_.password.reveal()},
                                            .log_file = dir_.Join("htpasswd.log")}));
    BERTH_ASSIGN_OR_RETURN(ExitStatus status, htpasswd->WaitForExit(std::chrono::seconds(30)));
    if (!status.success()) {
      return Fail(ErrorCode::kInternal,
                  "htpasswd failed with " + status.ToString() + ": " + htpasswd->ReadLog());
    }
  }

  if (mode == TestRegistryMode::kTokenAuth) {
    TokenServerOptions token = options_.token;
    if (token.signing_key_file.empty()) token.signing_key_file = pki_->token_key_file();
    if (token.signing_cert_file.empty()) token.signing_cert_file = pki_->token_cert_file();
    if (token.users.empty()) {
      token.users.push_back({.username = options_.username, .password = options_.password});
    }
    BERTH_ASSIGN_OR_RETURN(token_server_, TokenServer::Start(std::move(token)));
  }
  return Ok();
}

Result<void> TestRegistry::WriteConfig() const {
  std::string yaml;
  yaml += "version: 0.1\n";
  yaml += "log:\n";
  yaml += "  level: " + options_.log_level + "\n";
  yaml += "  formatter: text\n";
  yaml += "  fields:\n    service: berth-test-registry\n";
  yaml += "storage:\n";
  yaml += "  filesystem:\n    rootdirectory: " + Quote(storage_directory_.string()) + "\n";
  yaml +=
      "  delete:\n    enabled: " + std::string(options_.enable_delete ? "true" : "false") + "\n";
  yaml += "  maintenance:\n    uploadpurging:\n      enabled: false\n";
  yaml += "http:\n";
  yaml += "  addr: " + host() + "\n";
  yaml += "  secret: " + Quote(http_secret_) + "\n";
  yaml += "  headers:\n    X-Content-Type-Options: [nosniff]\n";
  if (tls_) {
    yaml += "  tls:\n";
    yaml += "    certificate: " + Quote(pki_->server_cert_file().string()) + "\n";
    yaml += "    key: " + Quote(pki_->server_key_file().string()) + "\n";
    if (options_.mode == TestRegistryMode::kTlsClientCert) {
      yaml += "    clientcas:\n      - " + Quote(pki_->ca_cert_file().string()) + "\n";
    }
  }
  if (options_.mode == TestRegistryMode::kBasicAuth) {
    yaml += "auth:\n  htpasswd:\n";
    yaml += "    realm: " + Quote(options_.realm) + "\n";
    yaml += "    path: " + Quote(dir_.Join("htpasswd").string()) + "\n";
  }
  if (options_.mode == TestRegistryMode::kTokenAuth) {
    yaml += "auth:\n  token:\n";
    yaml += "    realm: " + Quote(token_server_->realm()) + "\n";
    yaml += "    service: " + Quote(token_server_->service()) + "\n";
    yaml += "    issuer: " + Quote(token_server_->issuer()) + "\n";
    yaml += "    rootcertbundle: " + Quote(token_server_->signing_cert_file().string()) + "\n";
  }
  if (options_.enable_schema1) {
    yaml += "compatibility:\n  schema1:\n    enabled: true\n";
  }
  if (!options_.extra_config.empty()) {
    yaml += options_.extra_config;
    if (yaml.back() != '\n') yaml += "\n";
  }
  return WriteFileAtomically(config_file(), yaml);
}

Result<void> TestRegistry::Launch() {
  // A fresh log per launch attempt would lose history; append a marker instead.
  std::string marker = "---- berth: starting registry on " + host() + " ----\n";
  {
    Result<std::string> previous = ReadFile(log_file());
    BERTH_RETURN_IF_ERROR(
        WriteFileAtomically(log_file(), (previous ? *previous : std::string()) + marker));
  }
  BERTH_ASSIGN_OR_RETURN(process_, ChildProcess::Start({.argv = {options_.registry_binary.string(),
                                                                 "serve", config_file().string()},
                                                        .log_file = log_file()}));
  HttpFetchRequest probe = NewRequest("/v2/");
  probe.timeout = std::chrono::milliseconds(1000);
  auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
  std::string last_error;
  while (true) {
    Result<HttpFetchResponse> response = HttpFetch(probe);
    if (response) return Ok();
    last_error = response.error().ToString();
    if (!process_->Running()) {
      std::string log = ReadLog();
      ExitStatus status = process_->Stop();
      std::string log_since_start = log.substr(std::min(log.rfind(marker), log.size()));
      ErrorCode code = log_since_start.find("address already in use") != std::string::npos
                           ? ErrorCode::kAlreadyExists
                           : ErrorCode::kUnavailable;
      return Fail(code, "docker-registry exited with " + status.ToString() +
                            " before answering; log " + log_file().string() + ":\n" +
                            Tail(log_since_start));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      process_->Stop();
      return Fail(ErrorCode::kDeadlineExceeded,
                  "docker-registry did not answer " + probe.url + " within " +
                      std::to_string(options_.start_timeout.count()) + " ms (last error: " +
                      last_error + "); log " + log_file().string() + ":\n" + Tail(ReadLog()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

TestRegistry::~TestRegistry() { Stop(); }

void TestRegistry::Stop() {
  if (process_) process_->Stop();
  if (token_server_) token_server_->Stop();
}

void TestRegistry::Kill() {
  if (process_) process_->Stop(std::chrono::milliseconds(0));
}

Result<void> TestRegistry::Restart() {
  if (process_) process_->Stop();
  return WithContext(Launch(), "restart docker-registry on " + host());
}

std::string TestRegistry::host() const { return "127.0.0.1:" + std::to_string(port_); }

std::string TestRegistry::url() const { return (tls_ ? "https://" : "http://") + host(); }

std::filesystem::path TestRegistry::ca_file() const {
  return tls_ ? pki_->ca_cert_file() : std::filesystem::path();
}

std::filesystem::path TestRegistry::client_cert_file() const {
  return tls_ ? pki_->client_cert_file() : std::filesystem::path();
}

std::filesystem::path TestRegistry::client_key_file() const {
  return tls_ ? pki_->client_key_file() : std::filesystem::path();
}

std::string TestRegistry::ReadLog() const {
  Result<std::string> log = ReadFile(log_file());
  return log ? *log : "<no registry log: " + log.error().ToString() + ">";
}

HttpFetchRequest TestRegistry::NewRequest(std::string_view path, std::string method) const {
  HttpFetchRequest request{.method = std::move(method), .url = url() + std::string(path)};
  if (tls_) request.ca_file = ca_file();
  if (options_.mode == TestRegistryMode::kTlsClientCert) {
    request.client_cert_file = client_cert_file();
    request.client_key_file = client_key_file();
  }
  return request;
}

}  // namespace berth::testing
