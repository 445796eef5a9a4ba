#include "testing/token_server.h"

#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <ctime>

#include "berth/base/base64.h"
#include "testing/http_wire.h"
#include "testing/secret_sentinel.h"

namespace berth::testing {
namespace {

constexpr std::string_view kHexDigits = "0123456789abcdef";

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) {
    // Uniqueness is all a test needs; fall back to the clock.
    raw = std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  std::string hex;
  for (unsigned char c : raw) {
    hex.push_back(kHexDigits[c >> 4]);
    hex.push_back(kHexDigits[c & 15]);
  }
  return hex;
}

std::string Rfc3339(std::chrono::system_clock::time_point time) {
  std::time_t seconds = std::chrono::system_clock::to_time_t(time);
  std::tm utc = {};
  ::gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

// Splits scope parameters, each of which may hold several space-separated scopes.
std::vector<std::string> SplitScopes(const std::vector<std::string>& parameters) {
  std::vector<std::string> scopes;
  for (const std::string& parameter : parameters) {
    std::string_view rest = parameter;
    while (!rest.empty()) {
      size_t space = rest.find(' ');
      std::string_view scope = rest.substr(0, space);
      if (!scope.empty()) scopes.emplace_back(scope);
      if (space == std::string_view::npos) break;
      rest.remove_prefix(space + 1);
    }
  }
  return scopes;
}

bool RepositoryAllowed(const TokenUser& user, std::string_view name) {
  if (user.repositories.empty()) return true;
  for (const std::string& pattern : user.repositories) {
    if (pattern == name) return true;
    if (pattern.ends_with("/*") && name.starts_with(pattern.substr(0, pattern.size() - 1))) {
      return true;
    }
  }
  return false;
}

nlohmann::json AccessToJson(const std::vector<TokenAccess>& access) {
  nlohmann::json entries = nlohmann::json::array();
  for (const TokenAccess& entry : access) {
    entries.push_back({{"type", entry.type}, {"name", entry.name}, {"actions", entry.actions}});
  }
  return entries;
}

HttpServerResponse JsonResponse(int status, const nlohmann::json& body) {
  return {.status = status,
          .headers = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}},
          .body = body.dump()};
}

// Decodes "Authorization: Basic base64(user:password)". False if absent or malformed.
bool BasicCredentials(const HttpServerRequest& request, std::string& username,
                      std::string& password) {
  std::optional<std::string> header = request.Header("Authorization");
  if (!header.has_value() || header->size() < 6 ||
      !std::equal(header->begin(), header->begin() + 6, "Basic ",
                  [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
    return false;
  }
  Result<std::string> decoded = Base64Decode(std::string_view(*header).substr(6));
  if (!decoded) return false;
  size_t colon = decoded->find(':');
  if (colon == std::string::npos) return false;
  username = decoded->substr(0, colon);
  password = decoded->substr(colon + 1);
  return true;
}

}  // namespace

Result<TokenAccess> ParseScope(std::string_view scope) {
  size_t first = scope.find(':');
  size_t last = scope.rfind(':');
  if (first == std::string_view::npos || first == last) {
    return Fail(ErrorCode::kInvalidArgument,
                "scope \"" + std::string(scope) + "\" is not type:name:actions");
  }
  TokenAccess access{.type = std::string(scope.substr(0, first)),
                     .name = std::string(scope.substr(first + 1, last - first - 1))};
  std::string_view actions = scope.substr(last + 1);
  while (!actions.empty()) {
    size_t comma = actions.find(',');
    if (comma != 0) access.actions.emplace_back(actions.substr(0, comma));
    if (comma == std::string_view::npos) break;
    actions.remove_prefix(comma + 1);
  }
  return access;
}

Result<std::unique_ptr<TokenServer>> TokenServer::Start(TokenServerOptions options) {
  if (options.signing_key_file.empty() || options.signing_cert_file.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "TokenServer needs signing_key_file and signing_cert_file (see TestPki)");
  }
  BERTH_ASSIGN_OR_RETURN(JwtSigner signer, JwtSigner::FromPemFiles(options.signing_key_file,
                                                                   options.signing_cert_file));
  auto server =
      std::unique_ptr<TokenServer>(new TokenServer(std::move(options), std::move(signer)));
  BERTH_ASSIGN_OR_RETURN(server->server_,
                         HttpServer::Start([raw = server.get()](const HttpServerRequest& request) {
                           return raw->Handle(request);
                         }));
  return server;
}

TokenServer::TokenServer(TokenServerOptions options, JwtSigner signer)
    : options_(std::move(options)),
      signer_(std::move(signer)),
      lifetime_seconds_(options_.token_lifetime.count()) {}

TokenServer::~TokenServer() { Stop(); }

void TokenServer::Stop() {
  if (server_) server_->Stop();
}

TokenServerStats TokenServer::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void TokenServer::ResetStats() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_ = {};
  scopes_.clear();
}

std::vector<std::string> TokenServer::requested_scopes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return scopes_;
}

Result<std::string> TokenServer::IssueToken(std::string_view subject,
                                            const std::vector<TokenAccess>& access,
                                            std::chrono::seconds lifetime) const {
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  int64_t expires = now + lifetime.count();
  nlohmann::json claims = {
      {"iss", options_.issuer},
      {"sub", std::string(subject)},
      {"aud", options_.service},
      {"exp", expires},
      // nbf must not be after exp, or an already expired token would be "not yet valid".
      {"nbf", std::min(now, expires) - 1},
      {"iat", now},
      {"jti", RandomHex(16)},
      {"access", AccessToJson(access)},
  };
  BERTH_ASSIGN_OR_RETURN(std::string token, signer_.Sign(claims));
  WatchSecret(token);  // a JWT cannot carry the sentinel prefix; watch it instead
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.tokens_issued;
  return token;
}

const TokenUser* TokenServer::Authenticate(std::string_view username,
                                           std::string_view password) const {
  for (const TokenUser& user : options_.users) {
    if (user.username == username && user.password.reveal() == password) return &user;
  }
  return nullptr;
}

std::vector<TokenAccess> TokenServer::Grant(const TokenUser* user,
                                            const std::vector<std::string>& scopes) const {
  std::vector<TokenAccess> granted;
  for (const std::string& scope : scopes) {
    Result<TokenAccess> requested = ParseScope(scope);
    if (!requested) continue;
    TokenAccess access{.type = requested->type, .name = requested->name};
    for (const std::string& action : requested->actions) {
      bool allowed = false;
      if (user != nullptr) {
        allowed = requested->type == "registry" || (requested->type.starts_with("repository") &&
                                                    RepositoryAllowed(*user, requested->name));
      } else {
        allowed =
            requested->type.starts_with("repository") && action == "pull" &&
            std::find(options_.public_repositories.begin(), options_.public_repositories.end(),
                      requested->name) != options_.public_repositories.end();
      }
      if (allowed) access.actions.push_back(action);
    }
    if (!access.actions.empty()) granted.push_back(std::move(access));
  }
  return granted;
}

std::string TokenServer::NewRefreshToken(const std::string& username) {
  std::string token = SentinelSecret("refresh-token-" + RandomHex(24));
  std::lock_guard<std::mutex> lock(mutex_);
  refresh_tokens_[token] = username;
  ++stats_.refresh_tokens_issued;
  return token;
}

HttpServerResponse TokenServer::Reject(int status, std::string_view error,
                                       std::string_view description, bool basic_challenge) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.rejected_requests;
  }
  HttpServerResponse response = JsonResponse(
      status, {{"error", std::string(error)}, {"error_description", std::string(description)}});
  if (basic_challenge) {
    response.headers.emplace_back("WWW-Authenticate", "Basic realm=\"berth-test-token-server\"");
  }
  return response;
}

HttpServerResponse TokenServer::Handle(const HttpServerRequest& request) {
  if (request.path != "/token") return {.status = 404, .body = "not found"};
  if (request.method == "GET") return HandleGet(request);
  if (request.method == "POST") return HandlePost(request);
  return {.status = 405, .headers = {{"Allow", "GET, POST"}}, .body = "method not allowed"};
}

HttpServerResponse TokenServer::HandleGet(const HttpServerRequest& request) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.get_requests;
  }
  std::optional<std::string> service = request.QueryValue("service");
  if (service.has_value() && *service != options_.service) {
    return Reject(400, "invalid_request", "unknown service " + *service);
  }
  std::vector<std::string> scopes = SplitScopes(request.QueryValues("scope"));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    scopes_.insert(scopes_.end(), scopes.begin(), scopes.end());
  }
  const TokenUser* user = nullptr;
  std::string username;
  std::string password;
  if (request.Header("Authorization").has_value()) {
    if (!BasicCredentials(request, username, password) ||
        (user = Authenticate(username, password)) == nullptr) {
      return Reject(401, "unauthorized", "invalid username or password", true);
    }
  } else if (!options_.allow_anonymous) {
    return Reject(401, "unauthorized", "authentication required", true);
  }

  std::chrono::seconds lifetime = token_lifetime();
  Result<std::string> token =
      IssueToken(user != nullptr ? user->username : "", Grant(user, scopes), lifetime);
  if (!token) return {.status = 500, .body = token.error().ToString()};
  nlohmann::json body = {{"token", *token},
                         {"access_token", *token},
                         {"expires_in", lifetime.count()},
                         {"issued_at", Rfc3339(std::chrono::system_clock::now())}};
  if (user != nullptr && request.QueryValue("offline_token") == "true") {
    body["refresh_token"] = NewRefreshToken(user->username);
  }
  if (user == nullptr) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.anonymous_requests;
  }
  return JsonResponse(200, body);
}

HttpServerResponse TokenServer::HandlePost(const HttpServerRequest& request) {
  std::map<std::string, std::string> form;
  std::vector<std::string> scope_parameters;
  for (auto& [name, value] : ParseQueryString(request.body)) {
    if (name == "scope") {
      scope_parameters.push_back(value);
    } else {
      form[name] = std::move(value);
    }
  }
  std::vector<std::string> scopes = SplitScopes(scope_parameters);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    scopes_.insert(scopes_.end(), scopes.begin(), scopes.end());
  }
  if (form["client_id"].empty()) {
    return Reject(400, "invalid_request", "client_id is required");
  }
  if (!form["service"].empty() && form["service"] != options_.service) {
    return Reject(400, "invalid_request", "unknown service " + form["service"]);
  }
  const std::string& grant_type = form["grant_type"];
  const TokenUser* user = nullptr;
  std::string refresh_token;
  if (grant_type == "password") {
    user = Authenticate(form["username"], form["password"]);
    if (user == nullptr) return Reject(401, "invalid_grant", "invalid username or password");
    if (form["access_type"] == "offline") refresh_token = NewRefreshToken(user->username);
  } else if (grant_type == "refresh_token") {
    std::string username;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = refresh_tokens_.find(form["refresh_token"]);
      if (it != refresh_tokens_.end()) username = it->second;
    }
    for (const TokenUser& candidate : options_.users) {
      if (!username.empty() && candidate.username == username) user = &candidate;
    }
    if (user == nullptr) return Reject(401, "invalid_grant", "unknown refresh token");
    refresh_token = form["refresh_token"];
  } else {
    return Reject(400, "unsupported_grant_type",
                  "grant_type must be password or refresh_token, got \"" + grant_type + "\"");
  }

  std::chrono::seconds lifetime = token_lifetime();
  Result<std::string> token = IssueToken(user->username, Grant(user, scopes), lifetime);
  if (!token) return {.status = 500, .body = token.error().ToString()};
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++(grant_type == "password" ? stats_.password_grants : stats_.refresh_token_grants);
  }
  std::string scope_text;
  for (const std::string& scope : scopes) scope_text += (scope_text.empty() ? "" : " ") + scope;
  nlohmann::json body = {{"access_token", *token},
                         {"scope", scope_text},
                         {"expires_in", lifetime.count()},
                         {"issued_at", Rfc3339(std::chrono::system_clock::now())}};
  if (!refresh_token.empty()) body["refresh_token"] = refresh_token;
  return JsonResponse(200, body);
}

}  // namespace berth::testing
