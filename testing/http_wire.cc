#include "testing/http_wire.h"

#include <strings.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace berth::testing {
namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && ::strncasecmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  return text;
}

// Splits a head into its start line and parsed header fields.
Result<std::pair<std::string_view, HeaderList>> SplitHead(std::string_view head) {
  size_t end = head.find("\r\n");
  std::string_view start_line = head.substr(0, end);
  HeaderList headers;
  while (end != std::string_view::npos) {
    head.remove_prefix(end + 2);
    end = head.find("\r\n");
    std::string_view line = head.substr(0, end);
    if (line.empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return Fail(ErrorCode::kInvalidArgument,
                  "malformed header line \"" + std::string(line.substr(0, 100)) + "\"");
    }
    headers.emplace_back(std::string(Trim(line.substr(0, colon))),
                         std::string(Trim(line.substr(colon + 1))));
  }
  return std::make_pair(start_line, std::move(headers));
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Result<bool> SocketReader::Fill() {
  char chunk[16 * 1024];
  while (true) {
    ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<size_t>(n));
      return true;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return Fail(ErrorCode::kUnavailable, std::string("recv: ") + std::strerror(errno));
  }
}

Result<std::optional<std::string>> SocketReader::ReadHead(size_t max_bytes) {
  size_t scanned = 0;
  while (true) {
    size_t end = buffer_.find("\r\n\r\n", scanned > 3 ? scanned - 3 : 0);
    if (end != std::string::npos) {
      std::string head = buffer_.substr(0, end);
      buffer_.erase(0, end + 4);
      return std::optional<std::string>(std::move(head));
    }
    // A TLS handshake record (a client trying https on this plain port) never ends in a blank
    // line: hand it over at once, so that the server answers "400 Bad Request" right away, as
    // real plain HTTP servers (Go's, nginx) do, instead of leaving the client's handshake hanging.
    if (!buffer_.empty() && buffer_.front() == '\x16') {
      std::string head = std::move(buffer_);
      buffer_.clear();
      return std::optional<std::string>(std::move(head));
    }
    scanned = buffer_.size();
    if (buffer_.size() > max_bytes) {
      return Fail(ErrorCode::kResourceExhausted,
                  "HTTP head larger than " + std::to_string(max_bytes) + " bytes");
    }
    BERTH_ASSIGN_OR_RETURN(bool more, Fill());
    if (!more) {
      if (buffer_.empty()) return std::optional<std::string>();
      return Fail(ErrorCode::kUnavailable, "connection closed in the middle of an HTTP head");
    }
  }
}

Result<std::string> SocketReader::ReadLine(size_t max_bytes) {
  while (true) {
    size_t end = buffer_.find("\r\n");
    if (end != std::string::npos) {
      std::string line = buffer_.substr(0, end);
      buffer_.erase(0, end + 2);
      return line;
    }
    if (buffer_.size() > max_bytes) {
      return Fail(ErrorCode::kResourceExhausted, "line longer than " + std::to_string(max_bytes));
    }
    BERTH_ASSIGN_OR_RETURN(bool more, Fill());
    if (!more) return Fail(ErrorCode::kUnavailable, "connection closed in the middle of a line");
  }
}

Result<std::string> SocketReader::ReadExactly(size_t count) {
  while (buffer_.size() < count) {
    BERTH_ASSIGN_OR_RETURN(bool more, Fill());
    if (!more) {
      return Fail(ErrorCode::kUnavailable, "connection closed after " +
                                               std::to_string(buffer_.size()) + " of " +
                                               std::to_string(count) + " bytes");
    }
  }
  std::string data = buffer_.substr(0, count);
  buffer_.erase(0, count);
  return data;
}

Result<std::string> SocketReader::ReadSome(size_t max_bytes) {
  if (buffer_.empty()) {
    BERTH_ASSIGN_OR_RETURN(bool more, Fill());
    if (!more) return std::string();
  }
  size_t count = std::min(max_bytes, buffer_.size());
  std::string data = buffer_.substr(0, count);
  buffer_.erase(0, count);
  return data;
}

Result<void> SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrorCode::kUnavailable, std::string("send: ") + std::strerror(errno));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

Result<RequestHead> ParseRequestHead(std::string_view head) {
  BERTH_ASSIGN_OR_RETURN(auto split, SplitHead(head));
  auto [start_line, headers] = std::move(split);
  size_t first = start_line.find(' ');
  size_t last = start_line.rfind(' ');
  if (first == std::string_view::npos || first == last) {
    return Fail(ErrorCode::kInvalidArgument,
                "malformed request line \"" + std::string(start_line.substr(0, 200)) + "\"");
  }
  RequestHead result;
  result.method = std::string(start_line.substr(0, first));
  result.target = std::string(start_line.substr(first + 1, last - first - 1));
  result.version = std::string(start_line.substr(last + 1));
  if (!result.version.starts_with("HTTP/1.")) {
    return Fail(ErrorCode::kInvalidArgument, "unsupported HTTP version \"" + result.version + "\"");
  }
  result.headers = std::move(headers);
  return result;
}

Result<ResponseHead> ParseResponseHead(std::string_view head) {
  BERTH_ASSIGN_OR_RETURN(auto split, SplitHead(head));
  auto [start_line, headers] = std::move(split);
  ResponseHead result;
  size_t first = start_line.find(' ');
  if (first == std::string_view::npos || !start_line.starts_with("HTTP/1.")) {
    return Fail(ErrorCode::kInvalidArgument,
                "malformed status line \"" + std::string(start_line.substr(0, 200)) + "\"");
  }
  result.version = std::string(start_line.substr(0, first));
  std::string_view rest = start_line.substr(first + 1);
  size_t second = rest.find(' ');
  std::string_view code = rest.substr(0, second);
  auto [end, ec] = std::from_chars(code.data(), code.data() + code.size(), result.status);
  if (ec != std::errc() || end != code.data() + code.size() || result.status < 100 ||
      result.status > 999) {
    return Fail(ErrorCode::kInvalidArgument,
                "malformed status code in \"" + std::string(start_line.substr(0, 200)) + "\"");
  }
  if (second != std::string_view::npos) result.reason = std::string(rest.substr(second + 1));
  result.headers = std::move(headers);
  return result;
}

std::string_view StatusReason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 416:
      return "Range Not Satisfiable";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Status";
  }
}

std::string SerializeRequestHead(const RequestHead& head) {
  std::string out = head.method + " " + head.target + " " +
                    (head.version.empty() ? std::string("HTTP/1.1") : head.version) + "\r\n";
  for (const auto& [name, value] : head.headers) out += name + ": " + value + "\r\n";
  out += "\r\n";
  return out;
}

std::string SerializeResponseHead(const ResponseHead& head) {
  std::string reason = head.reason.empty() ? std::string(StatusReason(head.status)) : head.reason;
  std::string out = (head.version.empty() ? std::string("HTTP/1.1") : head.version) + " " +
                    std::to_string(head.status) + " " + reason + "\r\n";
  for (const auto& [name, value] : head.headers) out += name + ": " + value + "\r\n";
  out += "\r\n";
  return out;
}

bool HasHeaderToken(const HeaderList& headers, std::string_view name, std::string_view token) {
  for (const auto& [key, value] : headers) {
    if (!EqualsIgnoreCase(key, name)) continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      if (EqualsIgnoreCase(Trim(rest.substr(0, comma)), token)) return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

void RemoveHeader(HeaderList& headers, std::string_view name) {
  std::erase_if(headers,
                [name](const auto& header) { return EqualsIgnoreCase(header.first, name); });
}

Result<std::optional<uint64_t>> ContentLength(const HeaderList& headers) {
  std::optional<std::string> value = FindHeader(headers, "Content-Length");
  if (!value.has_value()) return std::optional<uint64_t>();
  uint64_t length = 0;
  auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), length);
  if (ec != std::errc() || end != value->data() + value->size()) {
    return Fail(ErrorCode::kInvalidArgument, "bad Content-Length \"" + *value + "\"");
  }
  return std::optional<uint64_t>(length);
}

Result<void> ReadChunkedBody(SocketReader& reader,
                             const std::function<Result<void>(std::string_view)>& sink,
                             size_t max_piece) {
  while (true) {
    BERTH_ASSIGN_OR_RETURN(std::string size_line, reader.ReadLine());
    std::string_view size_text = size_line;
    size_text = size_text.substr(0, size_text.find(';'));  // chunk extensions
    size_text = Trim(size_text);
    uint64_t size = 0;
    auto [end, ec] =
        std::from_chars(size_text.data(), size_text.data() + size_text.size(), size, 16);
    if (ec != std::errc() || end != size_text.data() + size_text.size()) {
      return Fail(ErrorCode::kInvalidArgument, "bad chunk size line \"" + size_line + "\"");
    }
    if (size == 0) break;
    while (size > 0) {
      size_t piece = static_cast<size_t>(std::min<uint64_t>(size, max_piece));
      BERTH_ASSIGN_OR_RETURN(std::string data, reader.ReadExactly(piece));
      BERTH_RETURN_IF_ERROR(sink(data));
      size -= piece;
    }
    BERTH_ASSIGN_OR_RETURN(std::string crlf, reader.ReadLine());
    if (!crlf.empty()) return Fail(ErrorCode::kInvalidArgument, "chunk not followed by CRLF");
  }
  // Trailer fields, up to the empty line.
  while (true) {
    BERTH_ASSIGN_OR_RETURN(std::string line, reader.ReadLine());
    if (line.empty()) return Ok();
  }
}

std::string UrlDecode(std::string_view text, bool plus_as_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%' && i + 2 < text.size()) {
      int high = HexValue(text[i + 1]);
      int low = HexValue(text[i + 2]);
      if (high >= 0 && low >= 0) {
        out.push_back(static_cast<char>(high * 16 + low));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_as_space && c == '+' ? ' ' : c);
  }
  return out;
}

std::string UrlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> ParseQueryString(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> result;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    if (!item.empty()) {
      size_t eq = item.find('=');
      std::string_view name = item.substr(0, eq);
      std::string_view value = eq == std::string_view::npos ? "" : item.substr(eq + 1);
      result.emplace_back(UrlDecode(name), UrlDecode(value));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return result;
}

}  // namespace berth::testing
