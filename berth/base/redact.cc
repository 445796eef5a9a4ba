#include "berth/base/redact.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace berth {
namespace {

char Lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool StartsWithNoCase(std::string_view text, size_t pos, std::string_view prefix) {
  if (text.size() - pos < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (Lower(text[pos + i]) != Lower(prefix[i])) return false;
  }
  return true;
}

bool IsKeyChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
}

// Characters that end a credential value in free text.
bool EndsValue(char c) {
  return std::isspace(static_cast<unsigned char>(c)) || c == '"' || c == '\'' || c == ',' ||
         c == '&' || c == ';' || c == '}' || c == ']' || c == ')' || c == '>';
}

constexpr std::array<std::string_view, 11> kSecretKeyWords = {
    "password",   "passwd",    "token", "secret", "auth",   "identitytoken",
    "credential", "signature", "sig",   "apikey", "api_key"};

// True when `text` at `pos` starts a WWW-Authenticate challenge parameter ("realm=…",
// "service=…"): what follows "Basic " or "Bearer " in a challenge, which names where to log in
// and is no credential. A credential (token68) never has a '=' but as trailing padding, so a
// known parameter name followed by '=' and a value cannot be one.
bool IsChallengeParameter(std::string_view text, size_t pos) {
  for (std::string_view name : {"realm", "service", "scope", "error", "charset"}) {
    if (!StartsWithNoCase(text, pos, name)) continue;
    size_t after = pos + name.size();
    if (after + 1 >= text.size() || text[after] != '=') continue;
    char first = text[after + 1];
    if (first == '"' || (first != '=' && !EndsValue(first))) return true;
  }
  return false;
}

}  // namespace

bool IsSecretKey(std::string_view key) {
  // A dotted key ("auth.toml", "configs.r.auth.password") is judged by its last component.
  if (size_t dot = key.rfind('.'); dot != std::string_view::npos) key = key.substr(dot + 1);
  std::string lowered(key);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(), Lower);
  if (lowered == "sig") return true;
  for (std::string_view word : kSecretKeyWords) {
    if (word == "sig") continue;  // only as a whole key: "signal" is not a secret
    if (lowered.find(word) != std::string::npos) {
      // "author" and "oauth_service" are not secrets; "auth", "x-auth-token" are.
      if (word == "auth" && lowered.find("author") != std::string::npos &&
          lowered.find("authorization") == std::string::npos) {
        continue;
      }
      return true;
    }
  }
  return false;
}

namespace {

// The three forms a secret takes in free text. Each looks at text[i]: when its form starts there
// it appends the text up to the end of that form, the secret replaced, to `out`, moves `i` past
// it and returns true; otherwise it leaves both alone and returns false.

// An authentication scheme and its credential: "Basic <b64>", "Bearer <token>" (not a challenge's
// parameters, "Bearer realm=…").
bool RedactSchemeCredential(std::string_view text, size_t& i, std::string& out) {
  const size_t n = text.size();
  for (std::string_view scheme : {std::string_view("basic "), std::string_view("bearer ")}) {
    if (!StartsWithNoCase(text, i, scheme) || (i > 0 && IsKeyChar(text[i - 1]))) continue;
    size_t value_start = i + scheme.size();
    if (IsChallengeParameter(text, value_start)) return false;
    size_t j = value_start;
    while (j < n && !EndsValue(text[j])) ++j;
    if (j == value_start) return false;
    out.append(text.substr(i, scheme.size()));
    out.append(kRedacted);
    i = j;
    return true;
  }
  return false;
}

// A URL's userinfo and query: "scheme://user:pass@host/path?query" keeps scheme, host and path.
bool RedactUrl(std::string_view text, size_t& i, std::string& out) {
  const size_t n = text.size();
  if (text.compare(i, 3, "://") != 0) return false;
  out.append("://");
  i += 3;
  size_t j = i;
  while (j < n && !EndsValue(text[j]) && text[j] != '/' && text[j] != '@') ++j;
  if (j < n && text[j] == '@') {
    out.append(kRedacted);
    out.push_back('@');
    i = j + 1;
  }
  // Copy the rest of the URL up to its query, which is dropped.
  while (i < n && !EndsValue(text[i]) && text[i] != '?') out.push_back(text[i++]);
  if (i < n && text[i] == '?') {
    size_t q = i + 1;
    while (q < n && !std::isspace(static_cast<unsigned char>(text[q])) && text[q] != '"' &&
           text[q] != '\'') {
      ++q;
    }
    out.push_back('?');
    out.append(kRedacted);
    i = q;
  }
  return true;
}

// key=value, key: value, "key": "value" where the key names a secret. A key that names none is
// copied whole (so a longer key's tail is never taken for a key of its own).
bool RedactKeyValue(std::string_view text, size_t& i, std::string& out) {
  const size_t n = text.size();
  if (!IsKeyChar(text[i]) || (i > 0 && IsKeyChar(text[i - 1]))) return false;
  size_t key_end = i;
  while (key_end < n && IsKeyChar(text[key_end])) ++key_end;
  std::string_view key = text.substr(i, key_end - i);
  size_t j = key_end;
  if (j < n && text[j] == '"') ++j;  // closing quote of a JSON key
  size_t sep = j;
  while (j < n && text[j] == ' ') ++j;
  if (j < n && (text[j] == '=' || text[j] == ':') && IsSecretKey(key)) {
    ++j;
    while (j < n && text[j] == ' ') ++j;
    bool quoted = j < n && text[j] == '"';
    if (quoted) ++j;
    size_t value_start = j;
    // "Authorization: Basic xyz" — the value runs to the end of the line.
    bool header = StartsWithNoCase(key, 0, "authorization") ||
                  StartsWithNoCase(key, 0, "proxy-authorization");
    if (quoted) {
      while (j < n && text[j] != '"') j += (text[j] == '\\' && j + 1 < n) ? 2 : 1;
    } else if (header) {
      while (j < n && text[j] != '\r' && text[j] != '\n') ++j;
    } else {
      while (j < n && !EndsValue(text[j])) ++j;
    }
    if (j > value_start) {
      out.append(text.substr(i, value_start - i));
      out.append(kRedacted);
      i = std::min(j, n);
      return true;
    }
  }
  out.append(text.substr(i, sep - i));
  i = sep;
  return true;
}

}  // namespace

std::string RedactSecrets(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (RedactSchemeCredential(text, i, out) || RedactUrl(text, i, out) ||
        RedactKeyValue(text, i, out)) {
      continue;
    }
    out.push_back(text[i++]);
  }
  return out;
}

}  // namespace berth
