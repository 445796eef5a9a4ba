#include "berth/peers/http_request.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace berth::peers {
namespace {

// RFC 9110's tchar.
bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsToken(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), IsTokenChar);
}

// Visible characters, spaces and tabs (obs-text allowed): a field value.
bool IsFieldText(std::string_view text) {
  return std::none_of(text.begin(), text.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return (byte < 0x20 && c != '\t') || byte == 0x7f;
  });
}

// A request target: visible ASCII only.
bool IsTargetText(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte > 0x20 && byte < 0x7f;
  });
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view TrimSpaces(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

Error Malformed(std::string_view what) {
  return Error(ErrorCode::kInvalidArgument, fmt::format("malformed request: {}", what));
}

Result<void> ParseRequestLine(std::string_view line, RequestHead& head) {
  const size_t first_space = line.find(' ');
  const size_t second_space =
      first_space == std::string_view::npos ? first_space : line.find(' ', first_space + 1);
  if (second_space == std::string_view::npos) return Fail(Malformed("request line"));
  const std::string_view method = line.substr(0, first_space);
  const std::string_view target = line.substr(first_space + 1, second_space - first_space - 1);
  const std::string_view version = line.substr(second_space + 1);
  if (!IsToken(method)) return Fail(Malformed("method"));
  if (!IsTargetText(target)) return Fail(Malformed("request target"));
  if (version == "HTTP/1.1") {
    head.minor_version = 1;
  } else if (version == "HTTP/1.0") {
    head.minor_version = 0;
  } else {
    return Fail(Malformed("HTTP version (HTTP/1.1 or HTTP/1.0 expected)"));
  }
  head.method = method;
  head.target = target;
  return Ok();
}

// Parses "a-b", "a-" or "-n" (one range of a bytes= header); nullopt when it does not parse.
std::optional<std::pair<std::optional<int64_t>, std::optional<int64_t>>> ParseRangeSpec(
    std::string_view spec) {
  const size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto number = [](std::string_view digits) -> std::optional<std::optional<int64_t>> {
    if (digits.empty()) return std::optional<int64_t>();
    int64_t value = 0;
    auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (error != std::errc() || end != digits.data() + digits.size() || value < 0) {
      return std::nullopt;
    }
    return std::optional<int64_t>(value);
  };
  auto first = number(spec.substr(0, dash));
  auto last = number(spec.substr(dash + 1));
  if (!first || !last || (!*first && !*last)) return std::nullopt;
  return std::pair(*first, *last);
}

}  // namespace

std::optional<std::string_view> RequestHead::Field(std::string_view name) const {
  for (const auto& [field, value] : fields) {
    if (EqualsIgnoreCase(field, name)) return std::string_view(value);
  }
  return std::nullopt;
}

std::string_view RequestHead::Path() const {
  const std::string_view whole = target;
  return whole.substr(0, whole.find('?'));
}

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "%3A" → ":", "+" stays "+"; nullopt for a '%' not followed by two hex digits.
std::optional<std::string> PercentDecode(std::string_view text) {
  std::string decoded;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      decoded += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int high = HexValue(text[i + 1]);
    const int low = HexValue(text[i + 2]);
    if (high < 0 || low < 0) return std::nullopt;
    decoded += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return decoded;
}

}  // namespace

std::optional<std::string> RequestHead::QueryParameter(std::string_view name) const {
  const std::string_view whole = target;
  const size_t question = whole.find('?');
  if (question == std::string_view::npos) return std::nullopt;
  std::string_view query = whole.substr(question + 1);
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const size_t equals = pair.find('=');
    if (pair.substr(0, equals) != name) continue;
    return PercentDecode(equals == std::string_view::npos ? std::string_view()
                                                          : pair.substr(equals + 1));
  }
  return std::nullopt;
}

bool RequestHead::KeepAlive() const {
  if (minor_version == 0) return false;
  const std::optional<std::string_view> connection = Field("Connection");
  if (!connection) return true;
  std::string_view rest = *connection;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    if (EqualsIgnoreCase(TrimSpaces(rest.substr(0, comma)), "close")) return false;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return true;
}

bool RequestHead::HasBody() const {
  if (Field("Transfer-Encoding")) return true;
  const std::optional<std::string_view> length = Field("Content-Length");
  return length && *length != "0";
}

Result<RequestHead> ParseRequestHead(std::string_view text) {
  RequestHead head;
  size_t line_end = text.find("\r\n");
  BERTH_RETURN_IF_ERROR(ParseRequestLine(text.substr(0, line_end), head));
  while (line_end != std::string_view::npos) {
    text.remove_prefix(line_end + 2);
    line_end = text.find("\r\n");
    const std::string_view line = text.substr(0, line_end);
    if (line.find('\n') != std::string_view::npos || line.find('\r') != std::string_view::npos) {
      return Fail(Malformed("bare CR or LF in a header field"));
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return Fail(Malformed("header field without a colon"));
    const std::string_view name = line.substr(0, colon);
    // A field name followed by space, or a line starting with one (obsolete folding), is refused
    // (RFC 9112 5.1 and 5.2).
    if (!IsToken(name)) return Fail(Malformed("header field name"));
    const std::string_view value = TrimSpaces(line.substr(colon + 1));
    if (!IsFieldText(value)) return Fail(Malformed("header field value"));
    head.fields.emplace_back(name, value);
  }
  return head;
}

RangeAnswer ResolveRange(std::optional<std::string_view> range, int64_t size) {
  constexpr std::string_view kBytes = "bytes=";
  if (!range || !range->starts_with(kBytes)) return {};
  const std::string_view spec = TrimSpaces(range->substr(kBytes.size()));
  if (spec.find(',') != std::string_view::npos) return {};  // several ranges: the whole blob
  const auto parsed = ParseRangeSpec(spec);
  if (!parsed) return {};
  const auto [first, last] = *parsed;
  const RangeAnswer unsatisfiable{.kind = RangeAnswer::Kind::kUnsatisfiable};
  if (!first) {  // the last *last bytes
    if (*last == 0 || size == 0) return unsatisfiable;
    return {.kind = RangeAnswer::Kind::kPartial,
            .first = size - std::min(*last, size),
            .last = size - 1};
  }
  if (last && *last < *first) return {};  // invalid: ignored
  if (*first >= size) return unsatisfiable;
  return {.kind = RangeAnswer::Kind::kPartial,
          .first = *first,
          .last = last ? std::min(*last, size - 1) : size - 1};
}

}  // namespace berth::peers
