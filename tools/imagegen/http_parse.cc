#include "tools/imagegen/http_parse.h"

#include <cctype>

namespace berth::imagegen {
namespace {

std::string Lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) out.push_back(static_cast<char>(std::tolower(c)));
  return out;
}

bool AllDigits(std::string_view text) {
  if (text.empty()) return false;
  for (unsigned char c : text) {
    if (!std::isdigit(c)) return false;
  }
  return true;
}

// Splits "host", "host:port", "[v6]" or "[v6]:port" into `url`. False when malformed.
bool SplitAuthority(std::string_view authority, ParsedUrl& url) {
  if (authority.empty() || authority.find('@') != std::string_view::npos) return false;
  std::string_view port_part;
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return false;
      port_part = after.substr(1);
      if (!AllDigits(port_part)) return false;
    }
  } else {
    size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      port_part = authority.substr(colon + 1);
      if (!AllDigits(port_part)) return false;
      authority = authority.substr(0, colon);
    }
    if (authority.empty()) return false;
    url.host = std::string(authority);
  }
  url.port = std::string(port_part);
  return true;
}

// The directory of a path: everything up to and including its last '/'.
std::string Directory(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "/" : path.substr(0, slash + 1);
}

// Splits "path?query" into the two parts of `url` ("/" for an empty path).
void SetPathAndQuery(std::string_view text, ParsedUrl& url) {
  size_t hash = text.find('#');
  if (hash != std::string_view::npos) text = text.substr(0, hash);
  size_t question = text.find('?');
  std::string_view path = text.substr(0, question);
  url.path = path.empty() ? "/" : std::string(path);
  if (url.path.front() != '/') url.path.insert(0, "/");
  url.query = question == std::string_view::npos ? "" : std::string(text.substr(question + 1));
}

bool IsTokenChar(unsigned char c) {
  return std::isalnum(c) ||
         std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

// Reads WWW-Authenticate text left to right.
class ChallengeReader {
 public:
  explicit ChallengeReader(std::string_view text) : text_(text) {}

  bool AtEnd() {
    SkipWhitespace();
    return position_ == text_.size();
  }
  void SkipWhitespace() {
    while (position_ < text_.size() && (text_[position_] == ' ' || text_[position_] == '\t')) {
      ++position_;
    }
  }
  void SkipSeparators() {
    while (position_ < text_.size() &&
           (text_[position_] == ' ' || text_[position_] == '\t' || text_[position_] == ',')) {
      ++position_;
    }
  }
  std::string_view ReadToken() {
    size_t start = position_;
    while (position_ < text_.size() && IsTokenChar(static_cast<unsigned char>(text_[position_]))) {
      ++position_;
    }
    return text_.substr(start, position_ - start);
  }
  // True, consuming it, when the next non-blank character is `c`.
  bool Take(char c) {
    SkipWhitespace();
    if (position_ < text_.size() && text_[position_] == c) {
      ++position_;
      return true;
    }
    return false;
  }
  // After an '=': a quoted string (unescaped) or a token. nullopt for an unterminated quote.
  std::optional<std::string> ReadValue() {
    SkipWhitespace();
    if (position_ >= text_.size() || text_[position_] != '"') return std::string(ReadToken());
    std::string value;
    for (++position_; position_ < text_.size(); ++position_) {
      char c = text_[position_];
      if (c == '"') {
        ++position_;
        return value;
      }
      if (c == '\\' && position_ + 1 < text_.size()) c = text_[++position_];
      value.push_back(c);
    }
    return std::nullopt;
  }
  size_t position() const { return position_; }
  void Rewind(size_t position) { position_ = position; }

 private:
  std::string_view text_;
  size_t position_ = 0;
};

}  // namespace

std::string ParsedUrl::Authority() const {
  std::string authority = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return port.empty() ? authority : authority + ":" + port;
}

std::string ParsedUrl::ToString() const {
  return scheme + "://" + Authority() + path + (query.empty() ? "" : "?" + query);
}

std::optional<ParsedUrl> ParseHttpUrl(std::string_view text) {
  size_t separator = text.find("://");
  if (separator == std::string_view::npos) return std::nullopt;
  ParsedUrl url;
  url.scheme = Lowercase(text.substr(0, separator));
  if (url.scheme != "http" && url.scheme != "https") return std::nullopt;
  std::string_view rest = text.substr(separator + 3);
  size_t authority_end = rest.find_first_of("/?#");
  if (!SplitAuthority(rest.substr(0, authority_end), url)) return std::nullopt;
  SetPathAndQuery(authority_end == std::string_view::npos ? "" : rest.substr(authority_end), url);
  return url;
}

std::optional<ParsedUrl> ResolveReference(const ParsedUrl& base, std::string_view location) {
  if (location.find("://") != std::string_view::npos) return ParseHttpUrl(location);
  if (location.starts_with("//")) return ParseHttpUrl(base.scheme + ":" + std::string(location));
  ParsedUrl resolved = base;
  if (location.starts_with("/")) {
    SetPathAndQuery(location, resolved);
  } else {
    SetPathAndQuery(Directory(base.path) + std::string(location), resolved);
  }
  return resolved;
}

std::string PercentEncode(std::string_view value) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string encoded;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      encoded.push_back(static_cast<char>(c));
    } else {
      encoded += {'%', kDigits[c >> 4], kDigits[c & 0xF]};
    }
  }
  return encoded;
}

std::string AuthChallenge::Param(const std::string& name) const {
  auto found = params.find(name);
  return found == params.end() ? "" : found->second;
}

std::optional<std::vector<AuthChallenge>> ParseAuthChallenges(std::string_view header) {
  std::vector<AuthChallenge> challenges;
  ChallengeReader reader(header);
  reader.SkipSeparators();
  while (!reader.AtEnd()) {
    std::string_view scheme = reader.ReadToken();
    if (scheme.empty()) return std::nullopt;
    AuthChallenge challenge{.scheme = Lowercase(scheme)};
    // Parameters follow until a name without '=' (the next challenge's scheme) or the end.
    for (;;) {
      size_t before = reader.position();
      reader.SkipSeparators();
      std::string_view name = reader.ReadToken();
      if (name.empty() || !reader.Take('=')) {
        reader.Rewind(before);
        break;
      }
      std::optional<std::string> value = reader.ReadValue();
      if (!value) return std::nullopt;
      challenge.params[Lowercase(name)] = std::move(*value);
      if (!reader.AtEnd() && !reader.Take(',')) return std::nullopt;
    }
    challenges.push_back(std::move(challenge));
    reader.SkipSeparators();
  }
  if (challenges.empty()) return std::nullopt;
  return challenges;
}

}  // namespace berth::imagegen
