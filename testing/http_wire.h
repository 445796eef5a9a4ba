// File: testing/http_wire.h
//
// HTTP/1.1 wire pieces shared by the test servers (HttpServer, FaultProxy): a buffered socket
// reader, head parsers for requests and responses, chunked-body decoding, and URL/query helpers.
// They implement just what test peers need (RFC 9112 message framing: Content-Length, chunked,
// read-until-close); they are not hardened for hostile input beyond size limits.
//
// Thread safety: SocketReader is used by one thread at a time; the functions are pure.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "testing/http_fetch.h"

namespace berth::testing {

// Reads from a socket it does not own, keeping bytes read past what the caller asked for.
class SocketReader {
 public:
  explicit SocketReader(int fd) : fd_(fd) {}

  // Reads a message head up to and including the blank line. Returns the head without the final
  // "\r\n\r\n", or std::nullopt if the peer closed the connection before sending any byte (the
  // normal end of a keep-alive connection). kUnavailable if it closes mid-head or the read fails,
  // kResourceExhausted past `max_bytes`. Bytes that start with a TLS handshake record (0x16) are
  // returned at once as the "head", for the caller to refuse as malformed.
  Result<std::optional<std::string>> ReadHead(size_t max_bytes = 64 * 1024);
  // Reads one CRLF-terminated line (returned without the CRLF).
  Result<std::string> ReadLine(size_t max_bytes = 8 * 1024);
  // Reads exactly `count` bytes; kUnavailable if the peer closes first.
  Result<std::string> ReadExactly(size_t count);
  // Reads at most `max_bytes` (buffered bytes first). Returns an empty string at end of stream.
  Result<std::string> ReadSome(size_t max_bytes);

 private:
  // Appends whatever the socket has (blocking) to buffer_. Returns false at end of stream.
  Result<bool> Fill();

  int fd_;
  std::string buffer_;
};

// Writes all of `data` to a socket with MSG_NOSIGNAL (a closed peer is an error, not SIGPIPE).
Result<void> SendAll(int fd, std::string_view data);

struct RequestHead {
  std::string method;
  // The request target as sent, e.g. "/v2/foo/blobs/uploads/?digest=sha256%3A…".
  std::string target;
  std::string version;  // "HTTP/1.1"
  HeaderList headers;
};

struct ResponseHead {
  std::string version;
  int status = 0;
  std::string reason;
  HeaderList headers;
};

// Parse a head as returned by SocketReader::ReadHead. kInvalidArgument when malformed.
Result<RequestHead> ParseRequestHead(std::string_view head);
Result<ResponseHead> ParseResponseHead(std::string_view head);

// "OK", "Not Found", … for the usual codes; "Status" for others.
std::string_view StatusReason(int status);

// Serialises a head: start line, headers, blank line.
std::string SerializeRequestHead(const RequestHead& head);
std::string SerializeResponseHead(const ResponseHead& head);

// True if a header list contains `name` with a comma-separated token equal to `token`
// (case-insensitive), e.g. HasHeaderToken(headers, "Connection", "close").
bool HasHeaderToken(const HeaderList& headers, std::string_view name, std::string_view token);
// Removes every header named `name` (case-insensitive).
void RemoveHeader(HeaderList& headers, std::string_view name);

// The declared body length: the Content-Length value, nullopt when absent. kInvalidArgument when
// it is not a number.
Result<std::optional<uint64_t>> ContentLength(const HeaderList& headers);

// Decodes a chunked body from `reader`, calling `sink` with each piece of decoded data (at most
// `max_piece` bytes each) and consuming the trailer. kUnavailable if the stream ends early,
// kInvalidArgument on bad framing; an error from `sink` stops the read and is returned.
Result<void> ReadChunkedBody(SocketReader& reader,
                             const std::function<Result<void>(std::string_view)>& sink,
                             size_t max_piece = 64 * 1024);

// Percent-decodes `text` ('+' becomes ' ' when `plus_as_space`). Invalid escapes are kept as is.
std::string UrlDecode(std::string_view text, bool plus_as_space = true);
// Percent-encodes everything but unreserved characters (RFC 3986).
std::string UrlEncode(std::string_view text);
// Splits "a=1&b=2&a=3" (a query string or an application/x-www-form-urlencoded body) into
// decoded pairs, in order.
std::vector<std::pair<std::string, std::string>> ParseQueryString(std::string_view query);

}  // namespace berth::testing
