// File: berth/registry/auth.h
//
// Registry authentication, driven by the registry's challenges as the Docker token spec says:
//
//   1. A request goes out with whatever Authorization the Authorizer already has for its host
//      and scope (a cached bearer token, Basic credentials, or nothing).
//   2. A 401 hands the response to OnUnauthorized(): it reads WWW-Authenticate, and for Bearer
//      fetches a token from the realm (GET with Basic credentials, POST with an OAuth2 refresh
//      token when the credentials carry an identity token, or anonymously), caching it per
//      host+scope until shortly before `expires_in` runs out.
//   3. The caller retries once; a second 401 is kUnauthenticated.
//
// Credentials come from a callback per host (CRI AuthConfig for the request's own registry,
// else the config file's `configs.<host>.auth`). They are Secrets: they never reach a log line
// or an error message.
//
// Token fetches are logged at debug level (registry.token_fetched: host, realm host, scope, grant,
// expiry; registry.token_refused with the status), never with a token or password.
//
// Thread safety: Authorizer is safe for concurrent use; concurrent requests for the same
// host+scope share one token fetch.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "berth/base/redact.h"
#include "berth/base/result.h"
#include "berth/registry/challenge.h"
#include "berth/registry/http.h"

namespace berth::registry {

struct Credentials {
  std::string username;
  Secret password;
  Secret identity_token;  // an OAuth2 refresh token
  Secret registry_token;  // a bearer token used as is

  bool anonymous() const {
    return username.empty() && password.empty() && identity_token.empty() && registry_token.empty();
  }
};

// The fields of a CRI AuthConfig message.
struct CriAuthConfig {
  std::string username;
  Secret password;
  Secret auth;  // base64("user:password")
  std::string server_address;
  Secret identity_token;
  Secret registry_token;
};

// Credentials the CRI `auth` grants for requests to `host` ("registry.example:5000"), with the
// semantics of containerd's CRI plugin: when server_address is set, the credentials apply only
// to the host it names (docker.io, index.docker.io and registry-1.docker.io are one host);
// username+password first, then the identity token, then `auth` decoded to user:password
// (trailing NULs trimmed), then the registry token; nothing at all is anonymous.
// kInvalidArgument when `auth` is not base64 or holds no ':'. Never echoes a secret.
Result<Credentials> CredentialsForHost(const CriAuthConfig& auth, std::string_view host);

struct Token {
  Secret access_token;
  Secret refresh_token;
  std::chrono::seconds expires_in{60};
};

// Largest token response accepted.
inline constexpr size_t kMaxTokenResponseBytes = 1 << 20;

// Decodes a token server's JSON: `token` or `access_token`, `expires_in` (default 60 s as the
// spec says; shorter lifetimes are honoured, longer ones capped at a day), optional
// `refresh_token`. kInvalidArgument when malformed; kResourceExhausted over
// kMaxTokenResponseBytes.
Result<Token> ParseTokenResponse(std::string_view body);

class Authorizer {
 public:
  using Clock = std::chrono::steady_clock;
  using CredentialsFn = std::function<Credentials(std::string_view host)>;
  using TlsFn = std::function<TlsOptions(std::string_view host)>;
  using NowFn = std::function<Clock::time_point()>;

  // `transport` must outlive the Authorizer. `tls_for_host` gives the TLS options to reach a
  // token realm's host.
  Authorizer(HttpTransport& transport, CredentialsFn credentials_for_host, TlsFn tls_for_host,
             NowFn now = &Clock::now);

  // The Authorization header value for a request to `host` needing `scope`
  // ("repository:library/busybox:pull"), or nullopt to go without. May fetch a fresh token when
  // the cached one is about to expire (blocks on the network).
  Result<std::optional<Secret>> Authorization(std::string_view host, std::string_view scope,
                                              const CancelToken& cancel);

  // Learns from a 401 response of `host`: records its challenge and, for Bearer, fetches a token
  // for `scope` (dropping the cached one). kUnauthenticated when the registry wants credentials
  // berth does not have, or the token server refuses them; kPermissionDenied when it forbids;
  // kInvalidArgument for a malformed challenge; the transport's errors reaching the token server.
  Result<void> OnUnauthorized(std::string_view host, std::string_view scope,
                              const HttpResponse& response, const CancelToken& cancel);

  // The error for a 401 from `host` to a request that already carried what OnUnauthorized()
  // arranged (the retry): kUnauthenticated, naming the challenge's scheme and realm and whose
  // credentials were refused ("registry r.test refused the credentials of user \"u\" …"), or
  // that the registry wants credentials when there are none. Never carries a secret.
  Error Refused(std::string_view host, std::string_view scope, const HttpResponse& response) const;

  // Tokens fetched from token servers so far (for tests and metrics).
  int tokens_fetched() const;

 private:
  struct HostState {
    std::optional<Challenge> challenge;  // the scheme the host asked for
  };
  struct CachedToken {
    Secret token;
    Clock::time_point refresh_at;
  };

  Result<Secret> FetchToken(std::string_view host, const Challenge& challenge,
                            std::string_view scope, const CancelToken& cancel);
  std::shared_ptr<std::mutex> FetchLock(const std::string& key);

  HttpTransport& transport_;
  CredentialsFn credentials_for_host_;
  TlsFn tls_for_host_;
  NowFn now_;

  mutable std::mutex mutex_;
  std::map<std::string, HostState> hosts_;
  std::map<std::string, CachedToken> tokens_;     // key: host + " " + scope
  std::map<std::string, Secret> refresh_tokens_;  // key: host
  std::map<std::string, std::shared_ptr<std::mutex>> fetch_locks_;
  int tokens_fetched_ = 0;
};

}  // namespace berth::registry
