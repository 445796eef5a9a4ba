#include "berth/registry/auth.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "berth/base/base64.h"
#include "berth/base/log.h"
#include "berth/registry/url.h"

namespace berth::registry {
namespace {

// docker.io is reached at registry-1.docker.io and has legacy names; all are one host for
// credentials.
std::string CanonicalHost(std::string_view host) {
  if (host == "index.docker.io" || host == "registry-1.docker.io" || host == "docker.io") {
    return "docker.io";
  }
  return std::string(host);
}

// The host part of a CRI server_address: "https://host:5000/v1/", "host:5000", "host/path".
std::string HostOfServerAddress(std::string_view address) {
  size_t scheme = address.find("://");
  if (scheme != std::string_view::npos) address.remove_prefix(scheme + 3);
  address = address.substr(0, address.find('/'));
  return std::string(address);
}

std::string TokenKey(std::string_view host, std::string_view scope) {
  return std::string(host) + " " + std::string(scope);
}

// Refresh a token when less than this much of its life is left.
std::chrono::seconds RefreshMargin(std::chrono::seconds lifetime) {
  return std::min<std::chrono::seconds>(std::chrono::seconds(30), lifetime / 5);
}

std::string BasicAuthorization(const Credentials& credentials) {
  return "Basic " + Base64Encode(credentials.username + ":" + credentials.password.reveal());
}

// The challenge of a 401 to answer: the first Bearer one, else the first Basic one. nullopt
// when there is neither; kInvalidArgument for a malformed header.
Result<std::optional<Challenge>> ChooseChallenge(const HttpResponse& response) {
  std::optional<Challenge> chosen;
  for (const std::string& header : response.Headers("www-authenticate")) {
    BERTH_ASSIGN_OR_RETURN(std::vector<Challenge> challenges, ParseChallenges(header));
    for (Challenge& challenge : challenges) {
      if (challenge.scheme == "bearer") return std::optional<Challenge>(std::move(challenge));
      if (challenge.scheme == "basic" && !chosen) chosen = std::move(challenge);
    }
  }
  return chosen;
}

std::string NoCredentialsMessage(std::string_view host, const Challenge& challenge) {
  return fmt::format(
      "registry {} requires credentials ({}); pass them with the request or configure them for "
      "this host",
      host, challenge.Describe());
}

}  // namespace

Result<Credentials> CredentialsForHost(const CriAuthConfig& auth, std::string_view host) {
  if (!auth.server_address.empty() &&
      CanonicalHost(HostOfServerAddress(auth.server_address)) != CanonicalHost(host)) {
    return Credentials{};
  }
  if (!auth.username.empty())
    return Credentials{.username = auth.username, .password = auth.password};
  if (!auth.identity_token.empty()) return Credentials{.identity_token = auth.identity_token};
  if (!auth.auth.empty()) {
    Result<std::string> decoded = Base64Decode(auth.auth.reveal());
    if (!decoded) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("invalid auth in AuthConfig: {} (expected base64 of "
                              "\"username:password\")",
                              decoded.error().message()));
    }
    size_t colon = decoded->find(':');
    if (colon == std::string::npos) {
      return Fail(ErrorCode::kInvalidArgument,
                  "invalid auth in AuthConfig: decoded value has no ':' (expected base64 of "
                  "\"username:password\")");
    }
    std::string password = decoded->substr(colon + 1);
    while (!password.empty() && password.back() == '\0') password.pop_back();
    return Credentials{.username = decoded->substr(0, colon), .password = Secret(password)};
  }
  if (!auth.registry_token.empty()) return Credentials{.registry_token = auth.registry_token};
  return Credentials{};
}

Result<Token> ParseTokenResponse(std::string_view body) {
  if (body.size() > kMaxTokenResponseBytes) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("token response is {} bytes, over the {} byte limit", body.size(),
                            kMaxTokenResponseBytes));
  }
  auto parsed = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "token response is not a JSON object");
  }
  Token token;
  for (const char* key : {"access_token", "token"}) {
    auto it = parsed.find(key);
    if (it != parsed.end() && it->is_string() && !it->get<std::string>().empty()) {
      token.access_token = Secret(it->get<std::string>());
      break;
    }
  }
  if (token.access_token.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "token response has neither token nor access_token");
  }
  if (auto it = parsed.find("refresh_token"); it != parsed.end() && it->is_string()) {
    token.refresh_token = Secret(it->get<std::string>());
  }
  if (auto it = parsed.find("expires_in"); it != parsed.end()) {
    if (!it->is_number_integer()) {
      return Fail(ErrorCode::kInvalidArgument, "token response expires_in is not an integer");
    }
    int64_t seconds = it->get<int64_t>();
    // The spec asks servers for at least 60 s, but a server that issues shorter tokens means
    // it: honour it (refreshing early beats a 401 and a retry). Cap absurd values at a day.
    token.expires_in = std::chrono::seconds(std::clamp<int64_t>(seconds, 1, 86400));
  }
  return token;
}

Authorizer::Authorizer(HttpTransport& transport, CredentialsFn credentials_for_host,
                       TlsFn tls_for_host, NowFn now)
    : transport_(transport),
      credentials_for_host_(std::move(credentials_for_host)),
      tls_for_host_(std::move(tls_for_host)),
      now_(std::move(now)) {}

int Authorizer::tokens_fetched() const {
  std::lock_guard lock(mutex_);
  return tokens_fetched_;
}

std::shared_ptr<std::mutex> Authorizer::FetchLock(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto& slot = fetch_locks_[key];
  if (!slot) slot = std::make_shared<std::mutex>();
  return slot;
}

Result<std::optional<Secret>> Authorizer::Authorization(std::string_view host,
                                                        std::string_view scope,
                                                        const CancelToken& cancel) {
  Credentials credentials = credentials_for_host_(host);
  if (!credentials.registry_token.empty()) {
    return std::optional<Secret>(Secret("Bearer " + credentials.registry_token.reveal()));
  }
  std::optional<Challenge> challenge;
  {
    std::lock_guard lock(mutex_);
    auto it = hosts_.find(std::string(host));
    if (it != hosts_.end()) challenge = it->second.challenge;
  }
  if (!challenge) return std::optional<Secret>();  // no challenge seen yet: try without
  if (challenge->scheme == "basic") {
    if (credentials.username.empty()) return std::optional<Secret>();
    return std::optional<Secret>(Secret(BasicAuthorization(credentials)));
  }
  if (challenge->scheme != "bearer") return std::optional<Secret>();

  std::string key = TokenKey(host, scope);
  auto fetch_lock = FetchLock(key);
  std::lock_guard fetching(*fetch_lock);
  {
    std::lock_guard lock(mutex_);
    auto it = tokens_.find(key);
    if (it != tokens_.end() && now_() < it->second.refresh_at) {
      return std::optional<Secret>(Secret("Bearer " + it->second.token.reveal()));
    }
  }
  BERTH_ASSIGN_OR_RETURN(Secret token, FetchToken(host, *challenge, scope, cancel));
  return std::optional<Secret>(Secret("Bearer " + token.reveal()));
}

Result<void> Authorizer::OnUnauthorized(std::string_view host, std::string_view scope,
                                        const HttpResponse& response, const CancelToken& cancel) {
  Result<std::optional<Challenge>> parsed = ChooseChallenge(response);
  if (!parsed) {
    return Fail(
        std::move(parsed).error().WithContext(fmt::format("registry {} answered 401", host)));
  }
  std::optional<Challenge> chosen = std::move(*parsed);
  if (!chosen) {
    return Fail(ErrorCode::kUnauthenticated,
                fmt::format("registry {} answered 401 without a Basic or Bearer challenge", host));
  }
  Credentials credentials = credentials_for_host_(host);
  {
    std::lock_guard lock(mutex_);
    hosts_[std::string(host)].challenge = *chosen;
    tokens_.erase(TokenKey(host, scope));
  }
  if (chosen->scheme == "basic") {
    if (credentials.username.empty()) {
      return Fail(ErrorCode::kUnauthenticated, NoCredentialsMessage(host, *chosen));
    }
    return Ok();
  }
  if (!chosen->Param("realm").empty()) {
    std::string key = TokenKey(host, scope);
    auto fetch_lock = FetchLock(key);
    std::lock_guard fetching(*fetch_lock);
    BERTH_RETURN_IF_ERROR(FetchToken(host, *chosen, scope, cancel));
    return Ok();
  }
  return Fail(ErrorCode::kUnauthenticated,
              fmt::format("registry {} sent a Bearer challenge without a realm", host));
}

Error Authorizer::Refused(std::string_view host, std::string_view scope,
                          const HttpResponse& response) const {
  std::optional<Challenge> challenge;
  if (Result<std::optional<Challenge>> parsed = ChooseChallenge(response); parsed) {
    challenge = std::move(*parsed);
  }
  if (!challenge) {
    std::lock_guard lock(mutex_);
    if (auto it = hosts_.find(std::string(host)); it != hosts_.end())
      challenge = it->second.challenge;
  }
  if (!challenge) {
    return Error(
        ErrorCode::kUnauthenticated,
        fmt::format("registry {} answered HTTP 401 without a Basic or Bearer challenge", host));
  }
  Credentials credentials = credentials_for_host_(host);
  if (challenge->scheme == "basic") {
    if (credentials.username.empty()) {
      return Error(ErrorCode::kUnauthenticated, NoCredentialsMessage(host, *challenge));
    }
    return Error(ErrorCode::kUnauthenticated,
                 fmt::format("registry {} refused the credentials of user \"{}\" (HTTP 401, {}); "
                             "check the username and password",
                             host, credentials.username, challenge->Describe()));
  }
  std::string whose = credentials.username.empty()
                          ? "an anonymous token"
                          : fmt::format("the token of user \"{}\"", credentials.username);
  return Error(ErrorCode::kUnauthenticated,
               fmt::format("registry {} refused {} for {} (HTTP 401, {})", host, whose, scope,
                           challenge->Describe()));
}

namespace {

// The token request of the Docker token protocol: the OAuth2 refresh-token grant (POST) when
// there is a refresh token (an identity token is one), else a GET with the scopes in the query
// and the user's Basic credentials, if any.
HttpRequest TokenRequest(const std::string& realm, const std::string& service,
                         const std::vector<std::string>& scopes, const Credentials& credentials,
                         const Secret& refresh_token) {
  HttpRequest request;
  request.url = realm;
  request.max_buffered_body = kMaxTokenResponseBytes;
  if (!refresh_token.empty()) {
    request.method = "POST";
    request.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    request.body = "grant_type=refresh_token&client_id=berth&service=" + QueryEscape(service) +
                   "&refresh_token=" + QueryEscape(refresh_token.reveal());
    for (const std::string& one : scopes) request.body += "&scope=" + QueryEscape(one);
    return request;
  }
  request.url += realm.find('?') == std::string::npos ? "?" : "&";
  request.url += "service=" + QueryEscape(service);
  for (const std::string& one : scopes) request.url += "&scope=" + QueryEscape(one);
  if (!credentials.username.empty()) {
    request.headers.emplace_back("Authorization", BasicAuthorization(credentials));
  }
  return request;
}

}  // namespace

Result<Secret> Authorizer::FetchToken(std::string_view host, const Challenge& challenge,
                                      std::string_view scope, const CancelToken& cancel) {
  std::string realm = challenge.Param("realm");
  BERTH_ASSIGN_OR_RETURN(Url realm_url, ParseUrl(realm));
  std::string service = challenge.Param("service");
  std::vector<std::string> scopes = {std::string(scope)};
  std::string challenge_scope = challenge.Param("scope");
  if (!challenge_scope.empty() && challenge_scope != scope) scopes.push_back(challenge_scope);

  Credentials credentials = credentials_for_host_(host);
  Secret refresh_token = credentials.identity_token;
  {
    std::lock_guard lock(mutex_);
    if (auto it = refresh_tokens_.find(std::string(host)); it != refresh_tokens_.end()) {
      refresh_token = it->second;
    }
  }

  HttpRequest request = TokenRequest(realm, service, scopes, credentials, refresh_token);
  request.tls = tls_for_host_(realm_url.host);
  const auto started = Clock::now();
  Result<HttpResponse> response = transport_.RoundTrip(request, nullptr, cancel);
  auto elapsed =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
  std::string grant = !refresh_token.empty()          ? "refresh_token"
                      : !credentials.username.empty() ? "user"
                                                      : "anonymous";
  if (!response || response->status != 200) {
    log::Debug("registry.token_refused",
               {{"host", host},
                {"realm_host", realm_url.host},
                {"scope", fmt::format("{}", fmt::join(scopes, " "))},
                {"grant", grant},
                {"status", response ? std::to_string(response->status) : "none"},
                {"ms", elapsed}});
  }
  if (!response) {
    return Fail(std::move(response).error().WithContext(
        fmt::format("fetch token for {} from {}", scope, realm_url.host)));
  }
  if (response->status == 401 || response->status == 403) {
    ErrorCode code =
        response->status == 401 ? ErrorCode::kUnauthenticated : ErrorCode::kPermissionDenied;
    std::string who = credentials.username.empty()
                          ? (refresh_token.empty() ? "anonymous access" : "the identity token")
                          : fmt::format("the credentials of user \"{}\"", credentials.username);
    return Fail(code, fmt::format("token server {} refused {} for {} (HTTP {})", realm_url.host,
                                  who, scope, response->status));
  }
  if (response->status != 200) {
    return Fail(response->status >= 500 ? ErrorCode::kUnavailable : ErrorCode::kUnauthenticated,
                fmt::format("token server {} answered HTTP {} for {}", realm_url.host,
                            response->status, scope));
  }
  Result<Token> token = ParseTokenResponse(response->body);
  if (!token) {
    return Fail(std::move(token).error().WithContext(fmt::format("token from {}", realm_url.host)));
  }
  log::Debug("registry.token_fetched", {{"host", host},
                                        {"realm_host", realm_url.host},
                                        {"scope", fmt::format("{}", fmt::join(scopes, " "))},
                                        {"grant", grant},
                                        {"expires_in_s", token->expires_in.count()},
                                        {"ms", elapsed}});
  std::lock_guard lock(mutex_);
  ++tokens_fetched_;
  tokens_[TokenKey(host, scope)] = CachedToken{
      token->access_token, now_() + token->expires_in - RefreshMargin(token->expires_in)};
  if (!token->refresh_token.empty()) refresh_tokens_[std::string(host)] = token->refresh_token;
  return token->access_token;
}

}  // namespace berth::registry
