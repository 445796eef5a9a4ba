#include "berth/registry/challenge.h"

#include <fmt/format.h>

#include <cctype>

namespace berth::registry {
namespace {

// RFC 9110 tchar.
bool IsTokenChar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

class Scanner {
 public:
  explicit Scanner(std::string_view text) : text_(text) {}
  bool done() const { return pos_ >= text_.size(); }
  char peek() const { return done() ? '\0' : text_[pos_]; }
  void SkipSpace() {
    while (!done() && (text_[pos_] == ' ' || text_[pos_] == '\t')) ++pos_;
  }
  void SkipSpaceAndCommas() {
    while (!done() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == ',')) ++pos_;
  }
  std::string_view Token() {
    size_t start = pos_;
    while (!done() && IsTokenChar(text_[pos_])) ++pos_;
    return text_.substr(start, pos_ - start);
  }
  size_t pos() const { return pos_; }
  void set_pos(size_t pos) { pos_ = pos; }
  bool Consume(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  Result<std::string> QuotedString() {
    std::string out;
    ++pos_;  // opening quote
    while (!done()) {
      char c = text_[pos_++];
      if (c == '"') return out;
      if (c == '\\') {
        if (done()) break;
        c = text_[pos_++];
      }
      out.push_back(c);
    }
    return Fail(ErrorCode::kInvalidArgument, "unterminated quoted string in WWW-Authenticate");
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

std::string Challenge::Describe() const {
  std::string text = scheme;
  if (!text.empty()) text[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(text[0])));
  for (const char* key : {"realm", "service"}) {
    std::string value = Param(key);
    if (!value.empty()) text += fmt::format(" {}=\"{}\"", key, value);
  }
  return text;
}

Result<std::vector<Challenge>> ParseChallenges(std::string_view header) {
  if (header.size() > kMaxChallengeHeaderBytes) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("WWW-Authenticate header is {} bytes, over the {} byte limit",
                            header.size(), kMaxChallengeHeaderBytes));
  }
  std::vector<Challenge> challenges;
  Scanner scanner(header);
  scanner.SkipSpaceAndCommas();
  while (!scanner.done()) {
    std::string_view scheme = scanner.Token();
    if (scheme.empty()) {
      return Fail(
          ErrorCode::kInvalidArgument,
          fmt::format("malformed WWW-Authenticate header: unexpected '{}'", scanner.peek()));
    }
    Challenge challenge{.scheme = Lower(scheme)};
    scanner.SkipSpace();
    // Parameters: name=value pairs separated by commas, until a token not followed by '='
    // starts the next challenge.
    while (!scanner.done()) {
      size_t mark = scanner.pos();
      scanner.SkipSpaceAndCommas();
      std::string_view name = scanner.Token();
      scanner.SkipSpace();
      if (name.empty() || !scanner.Consume('=')) {
        scanner.set_pos(mark);  // the next challenge's scheme
        break;
      }
      scanner.SkipSpace();
      std::string value;
      if (scanner.peek() == '"') {
        BERTH_ASSIGN_OR_RETURN(value, scanner.QuotedString());
      } else {
        value = std::string(scanner.Token());
      }
      challenge.params[Lower(name)] = std::move(value);
      scanner.SkipSpace();
      if (!scanner.done() && scanner.peek() != ',') {
        return Fail(ErrorCode::kInvalidArgument,
                    fmt::format("malformed WWW-Authenticate header near parameter \"{}\"", name));
      }
    }
    challenges.push_back(std::move(challenge));
    scanner.SkipSpaceAndCommas();
  }
  return challenges;
}

}  // namespace berth::registry
