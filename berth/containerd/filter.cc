#include "berth/containerd/filter.h"

#include <fmt/format.h>

#include <cctype>
#include <optional>

namespace berth::containerd {
namespace {

// Appends `code_point` to `out` as UTF-8. False for a value that is no code point.
bool AppendUtf8(uint32_t code_point, std::string& out) {
  if (code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF)) return false;
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
  return true;
}

// Reads one filter string left to right. Every method returns nullopt or an error message on
// malformed input; the caller names the filter.
class Scanner {
 public:
  explicit Scanner(std::string_view text) : text_(text) {}

  bool AtEnd() {
    SkipSpace();
    return position_ >= text_.size();
  }
  size_t position() const { return position_; }
  char Peek() {
    SkipSpace();
    return position_ < text_.size() ? text_[position_] : '\0';
  }
  void Advance() { ++position_; }

  // A field: a quoted string or [A-Za-z0-9_]+.
  Result<std::string> Field() {
    if (Peek() == '"') return Quoted();
    size_t start = position_;
    while (
        position_ < text_.size() &&
        (std::isalnum(static_cast<unsigned char>(text_[position_])) || text_[position_] == '_')) {
      ++position_;
    }
    if (start == position_) return Problem("expected a field name or a quoted string");
    return std::string(text_.substr(start, position_ - start));
  }

  // The operator's characters ([=!~]+), possibly empty.
  std::string_view Operator() {
    SkipSpace();
    size_t start = position_;
    while (position_ < text_.size() &&
           (text_[position_] == '=' || text_[position_] == '!' || text_[position_] == '~')) {
      ++position_;
    }
    return text_.substr(start, position_ - start);
  }

  // A quoted string, or the run of characters up to ',' or white space.
  Result<std::string> Value() {
    if (Peek() == '"') return Quoted();
    size_t start = position_;
    while (position_ < text_.size() && text_[position_] != ',' &&
           !std::isspace(static_cast<unsigned char>(text_[position_]))) {
      ++position_;
    }
    if (start == position_) return Problem("expected a value");
    return std::string(text_.substr(start, position_ - start));
  }

  tl::unexpected<Error> Problem(std::string_view what) const {
    return Fail(ErrorCode::kInvalidArgument, fmt::format("{} at offset {}", what, position_));
  }

 private:
  void SkipSpace() {
    while (position_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[position_]))) {
      ++position_;
    }
  }

  // Go's double-quoted string syntax. REQUIRES: text_[position_] == '"'.
  Result<std::string> Quoted() {
    ++position_;
    std::string out;
    while (true) {
      if (position_ >= text_.size() || text_[position_] == '\n') {
        return Problem("quoted string not terminated");
      }
      char c = text_[position_++];
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (position_ >= text_.size()) return Problem("quoted string not terminated");
      char escape = text_[position_++];
      switch (escape) {
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'v':
          out += '\v';
          break;
        case '\\':
          out += '\\';
          break;
        case '"':
          out += '"';
          break;
        case 'x':
        case 'u':
        case 'U': {
          const size_t digits = escape == 'x' ? 2 : escape == 'u' ? 4 : 8;
          BERTH_ASSIGN_OR_RETURN(uint32_t value, Digits(digits, 16));
          if (escape == 'x') {
            out += static_cast<char>(value);
          } else if (!AppendUtf8(value, out)) {
            return Problem("escape is not a Unicode code point");
          }
          break;
        }
        default:
          if (escape >= '0' && escape <= '7') {
            --position_;
            BERTH_ASSIGN_OR_RETURN(uint32_t value, Digits(3, 8));
            if (value > 0xFF) return Problem("octal escape above \\377");
            out += static_cast<char>(value);
            break;
          }
          return Problem(fmt::format("unknown escape \\{}", escape));
      }
    }
  }

  Result<uint32_t> Digits(size_t count, uint32_t base) {
    uint32_t value = 0;
    for (size_t i = 0; i < count; ++i) {
      if (position_ >= text_.size()) return Problem("escape too short");
      char c = static_cast<char>(std::tolower(static_cast<unsigned char>(text_[position_++])));
      uint32_t digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 99;
      if (digit >= base) return Problem("bad digit in escape");
      value = value * base + digit;
    }
    return value;
  }

  std::string_view text_;
  size_t position_ = 0;
};

}  // namespace

Result<SnapshotFilter> SnapshotFilter::Parse(const std::vector<std::string>& filters) {
  SnapshotFilter parsed;
  for (const std::string& filter : filters) {
    Result<Conjunction> one = ParseOne(filter);
    if (!one) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("snapshot filter \"{}\": {}", filter, one.error().message()));
    }
    if (one->empty()) return SnapshotFilter();  // matches everything, so the others do not count
    parsed.any_of_.push_back(std::move(*one));
  }
  return parsed;
}

Result<SnapshotFilter::Conjunction> SnapshotFilter::ParseOne(std::string_view filter) {
  Conjunction selectors;
  Scanner scanner(filter);
  if (scanner.AtEnd()) return selectors;
  while (true) {
    Selector selector;
    BERTH_ASSIGN_OR_RETURN(std::string field, scanner.Field());
    std::vector<std::string> rest;
    while (scanner.Peek() == '.') {
      scanner.Advance();
      BERTH_ASSIGN_OR_RETURN(std::string part, scanner.Field());
      rest.push_back(std::move(part));
    }
    if (field == "labels") {
      if (rest.empty()) return scanner.Problem("labels needs a key (labels.<key>)");
      selector.field = Field::kLabel;
      for (size_t i = 0; i < rest.size(); ++i) selector.label += (i ? "." : "") + rest[i];
    } else if (field == "name" || field == "parent" || field == "kind") {
      if (!rest.empty()) return scanner.Problem(fmt::format("{} has no sub-fields", field));
      selector.field = field == "name"     ? Field::kName
                       : field == "parent" ? Field::kParent
                                           : Field::kKind;
    } else {
      return scanner.Problem(fmt::format(
          "unknown field \"{}\" (snapshots filter on name, parent, kind and labels.<key>)", field));
    }
    std::string_view op = scanner.Operator();
    if (op == "==" || op == "!=") {
      selector.op = op == "==" ? Operator::kEqual : Operator::kNotEqual;
      BERTH_ASSIGN_OR_RETURN(selector.value, scanner.Value());
    } else if (op == "~=") {
      return scanner.Problem("regular-expression matches (~=) are not supported");
    } else if (!op.empty()) {
      return scanner.Problem(fmt::format("unknown operator \"{}\" (use == or !=)", op));
    }
    selectors.push_back(std::move(selector));
    if (scanner.AtEnd()) return selectors;
    if (scanner.Peek() != ',') return scanner.Problem("expected ',' between selectors");
    scanner.Advance();
  }
}

bool SnapshotFilter::Matches(const Selector& selector, const snapshot::Info& info) {
  std::optional<std::string_view> value;
  switch (selector.field) {
    case Field::kName:
      value = info.name;
      break;
    case Field::kParent:
      value = info.parent;
      break;
    case Field::kKind:
      value = snapshot::KindName(info.kind);
      break;
    case Field::kLabel:
      if (auto found = info.labels.find(selector.label); found != info.labels.end()) {
        value = found->second;
      }
      break;
  }
  switch (selector.op) {
    case Operator::kPresent:
      return value.has_value();
    case Operator::kEqual:
      return value && *value == selector.value;
    case Operator::kNotEqual:
      return value.value_or("") != selector.value;  // an absent field counts as ""
  }
  return false;
}

bool SnapshotFilter::Matches(const snapshot::Info& info) const {
  if (any_of_.empty()) return true;
  for (const Conjunction& all_of : any_of_) {
    bool all = true;
    for (const Selector& selector : all_of) {
      if (!Matches(selector, info)) {
        all = false;
        break;
      }
    }
    if (all) return true;
  }
  return false;
}

}  // namespace berth::containerd
