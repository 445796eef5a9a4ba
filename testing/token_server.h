// File: testing/token_server.h
//
// TokenServer is a Docker registry token server (the "realm" of a registry configured with
// auth.token) for tests. It runs on an HttpServer on 127.0.0.1 and implements the two halves of
// the Docker token authentication spec:
//
//  GET /token?service=S&scope=repository:NAME:pull,push[&scope=…][&offline_token=true&client_id=C]
//      Basic auth of a configured user, or anonymous when allowed.
//      200 {"token": JWT, "access_token": JWT, "expires_in": N, "issued_at": RFC3339
//           [, "refresh_token": R when offline_token=true and a user authenticated]}
//  POST /token   (application/x-www-form-urlencoded)
//      grant_type=password&username=U&password=P&service=S&client_id=C[&access_type=offline][&scope=…]
//      grant_type=refresh_token&refresh_token=R&service=S&client_id=C[&scope=…]
//      200 {"access_token": JWT, "expires_in": N, "issued_at": …, "scope": …
//           [, "refresh_token": R for password grants with access_type=offline, and for refresh
//              grants (the same R)]}
//
// Wrong credentials or an unknown refresh token get 401 (with a Basic challenge on GET); a
// missing client_id or unknown grant_type gets 400; a service other than options.service gets
// 400. Scopes may repeat and may also be space-separated inside one parameter (OAuth2 style).
//
// What is granted: a configured user gets the requested actions (pull, push, delete, *) on every
// repository it is allowed (TokenUser::repositories; empty = all) and any "registry" scope (e.g.
// registry:catalog:*). An anonymous client gets "pull" on options.public_repositories only, and
// nothing else — the token is still issued (with fewer rights), as Docker Hub does, so the
// registry answers the later request with 401/403 insufficient_scope.
//
// Tokens are RS256 JWTs signed with the token key (see jwt.h for what Distribution checks) with
// claims iss, sub ("" for anonymous), aud (= service), exp, nbf, iat, jti and access.
//
// Thread safety: all methods may be called from any thread while requests are served.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/redact.h"
#include "berth/base/result.h"
#include "testing/http_server.h"
#include "testing/jwt.h"

namespace berth::testing {

struct TokenUser {
  std::string username;
  Secret password;
  // Repositories this user may access: exact names, or a prefix ending in "/*" ("team/*").
  // Empty means every repository.
  std::vector<std::string> repositories;
};

struct TokenServerOptions {
  // RSA key and certificate that sign the tokens (TestPki::token_key_file/token_cert_file). The
  // registry's rootcertbundle must contain the certificate. Required.
  std::filesystem::path signing_key_file;
  std::filesystem::path signing_cert_file;
  // Must match the registry's auth.token.service and auth.token.issuer.
  std::string service = "berth-test-registry";
  std::string issuer = "berth-test-token-issuer";
  std::vector<TokenUser> users;
  // Whether a GET without credentials gets a token (with public_repositories pull rights only).
  bool allow_anonymous = true;
  std::vector<std::string> public_repositories;
  // Lifetime of access tokens: both the exp claim and expires_in. Changeable at run time with
  // set_token_lifetime().
  std::chrono::seconds token_lifetime = std::chrono::minutes(5);
};

// One entry of a token's "access" claim.
struct TokenAccess {
  std::string type;  // "repository", "registry"
  std::string name;  // "library/busybox", "catalog"
  std::vector<std::string> actions;

  friend bool operator==(const TokenAccess&, const TokenAccess&) = default;
};

// Counters since start (or the last ResetStats()).
struct TokenServerStats {
  uint64_t tokens_issued = 0;         // access tokens issued, all paths
  uint64_t get_requests = 0;          // GET /token, any outcome
  uint64_t anonymous_requests = 0;    // GET /token without credentials that got a token
  uint64_t password_grants = 0;       // successful POST grant_type=password
  uint64_t refresh_token_grants = 0;  // successful POST grant_type=refresh_token
  uint64_t refresh_tokens_issued = 0;
  uint64_t rejected_requests = 0;  // 400/401 answers
};

class TokenServer {
 public:
  // Loads the signing key and starts serving. kInvalidArgument/kNotFound for a bad key or
  // certificate, errno errors if the server cannot listen.
  static Result<std::unique_ptr<TokenServer>> Start(TokenServerOptions options);

  TokenServer(const TokenServer&) = delete;
  TokenServer& operator=(const TokenServer&) = delete;
  ~TokenServer();  // Stop()s.

  // Stops serving and joins the server threads. Idempotent.
  void Stop();

  // "http://127.0.0.1:PORT".
  std::string url() const { return server_->url(); }
  // The registry's auth.token.realm: url() + "/token".
  std::string realm() const { return url() + "/token"; }
  const std::string& service() const { return options_.service; }
  const std::string& issuer() const { return options_.issuer; }
  const std::filesystem::path& signing_cert_file() const { return options_.signing_cert_file; }

  std::chrono::seconds token_lifetime() const {
    return std::chrono::seconds(lifetime_seconds_.load());
  }
  void set_token_lifetime(std::chrono::seconds lifetime) {
    lifetime_seconds_.store(lifetime.count());
  }

  TokenServerStats stats() const;
  void ResetStats();
  // Every scope string requested so far, in order (split on spaces).
  std::vector<std::string> requested_scopes() const;

  // Mints a token directly, without HTTP and without checking any user's rights. `lifetime`
  // sets exp relative to now and may be negative (an already expired token: Distribution
  // refuses it once exp + 60 s has passed). Counted in tokens_issued.
  Result<std::string> IssueToken(std::string_view subject, const std::vector<TokenAccess>& access,
                                 std::chrono::seconds lifetime) const;

 private:
  TokenServer(TokenServerOptions options, JwtSigner signer);
  HttpServerResponse Handle(const HttpServerRequest& request);
  HttpServerResponse HandleGet(const HttpServerRequest& request);
  HttpServerResponse HandlePost(const HttpServerRequest& request);
  HttpServerResponse Reject(int status, std::string_view error, std::string_view description,
                            bool basic_challenge = false);
  // Returns the user for a username/password pair, or null.
  const TokenUser* Authenticate(std::string_view username, std::string_view password) const;
  std::vector<TokenAccess> Grant(const TokenUser* user,
                                 const std::vector<std::string>& scopes) const;
  std::string NewRefreshToken(const std::string& username);

  const TokenServerOptions options_;
  const JwtSigner signer_;
  std::atomic<int64_t> lifetime_seconds_;
  mutable std::mutex mutex_;
  mutable TokenServerStats stats_;                     // guarded by mutex_
  std::vector<std::string> scopes_;                    // guarded by mutex_
  std::map<std::string, std::string> refresh_tokens_;  // token -> username; guarded by mutex_
  std::unique_ptr<HttpServer> server_;
};

// Parses "repository:name:pull,push": the type is up to the first ':', the actions (comma
// separated) after the last one, the name in between. kInvalidArgument without two ':'.
Result<TokenAccess> ParseScope(std::string_view scope);

}  // namespace berth::testing
