// File: berth/peers/http_request.h
//
// The HTTP/1.1 pieces the peer endpoint (blob_server.h) reads from a request: its head (request
// line and header fields, RFC 9112) and a Range header against a blob's size (RFC 9110 14.2).
// Parsing is strict, since anyone who reaches the port can send anything: CRLF line ends only,
// no obsolete line folding, token characters in methods and field names, no control
// characters in a target or a field value.
//
// Thread safety: pure functions over values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/base/result.h"

namespace berth::peers {

struct RequestHead {
  std::string method;     // "GET"
  std::string target;     // as sent: "/v2/library/busybox/blobs/sha256:…?ns=docker.io"
  int minor_version = 1;  // HTTP/1.<minor_version>
  std::vector<std::pair<std::string, std::string>> fields;  // values without surrounding spaces

  // The value of the first field named `name` (case-insensitive), if any.
  std::optional<std::string_view> Field(std::string_view name) const;
  // The target without its query string.
  std::string_view Path() const;
  // The value of the query parameter `name` ("?ns=docker.io&…"), percent-decoded; nullopt when
  // absent or when its escapes are malformed.
  std::optional<std::string> QueryParameter(std::string_view name) const;
  // Whether the connection stays open after the response: HTTP/1.1 unless "Connection: close";
  // HTTP/1.0 never (berth does not speak its keep-alive extension).
  bool KeepAlive() const;
  // Whether the request announces a body (Content-Length other than 0, or Transfer-Encoding).
  bool HasBody() const;
};

// Parses a request head: everything before the blank line that ends it (without that
// "\r\n\r\n"). kInvalidArgument, saying what is malformed, for anything that is not an
// HTTP/1.0 or HTTP/1.1 request head.
Result<RequestHead> ParseRequestHead(std::string_view head);

// What a Range header asks of a blob of a given size.
struct RangeAnswer {
  enum class Kind {
    kWhole,          // no Range, one the server ignores (not bytes=, malformed, several
                     // ranges): 200 with the whole blob
    kPartial,        // 206 with [first, last]
    kUnsatisfiable,  // 416 with Content-Range: bytes */size
  };
  Kind kind = Kind::kWhole;
  int64_t first = 0;
  int64_t last = -1;  // inclusive
};

// Resolves `range` (the Range field's value, nullopt when absent) against `size`:
// "bytes=a-b" (b clamped to the last byte), "bytes=a-", "bytes=-n" (the last n bytes, all of
// them when n >= size). A first byte at or past the end, or a suffix of 0 bytes, is
// unsatisfiable. A header that does not parse, or one asking for several ranges, is ignored
// (the whole blob), as RFC 9110 allows.
RangeAnswer ResolveRange(std::optional<std::string_view> range, int64_t size);

}  // namespace berth::peers
