// File: berth/registry/http.h
//
// HttpTransport is the registry client's one seam to the network: it performs a single HTTP
// exchange and does not follow redirects or handle auth (the client does both, so that it can
// decide which headers go to which host). CurlTransport is the real implementation; tests may
// use a fake for unit tests of the client's decisions.
//
// Thread safety: implementations must allow concurrent RoundTrip() calls.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/base/cancel.h"
#include "berth/base/result.h"

namespace berth::registry {

// TLS settings for one registry host.
struct TlsOptions {
  // PEM files whose certificates are added to the system's trusted CAs (not replacing them).
  std::vector<std::string> ca_files;
  std::string cert_file;  // client certificate (PEM)
  std::string key_file;   // its key; empty when cert_file holds both
  bool insecure_skip_verify = false;

  friend bool operator==(const TlsOptions&, const TlsOptions&) = default;
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Whether an https:// exchange may be repeated over plain http, as containerd does for a
// loopback registry written without a scheme.
enum class PlainHttpFallback {
  kNever,
  // Repeat the exchange once over http:// when the https attempt shows the server does not speak
  // TLS: it answered the TLS handshake with something that is not TLS (a plain HTTP server's
  // reply), or the TCP connection was made but the handshake timed out. Any other failure,
  // a certificate the client does not trust among them, is returned as it is.
  kWhenServerIsNotTls,
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  HeaderList headers;
  std::string body;  // sent when not empty (e.g. an OAuth2 form)
  TlsOptions tls;
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(30)};
  // Watchdog: no byte (of the response head or body) received for this long abandons the
  // exchange with kUnavailable, naming the timeout. Zero disables it.
  std::chrono::milliseconds progress_timeout{std::chrono::minutes(5)};
  // Watchdog for slow-drip links: fewer than min_bytes_per_second × min_speed_window bytes
  // received in a window of min_speed_window abandons the exchange with kUnavailable. Windows
  // are counted back to back from the start of the exchange. Zero disables it.
  uint64_t min_bytes_per_second = 0;
  std::chrono::milliseconds min_speed_window{std::chrono::seconds(30)};
  // Largest body buffered into HttpResponse::body (successful bodies without a sink, and every
  // error body); more is kResourceExhausted for successes and silently cut for errors.
  size_t max_buffered_body = 4 << 20;
  // For an https:// URL: see PlainHttpFallback. Ignored for http://.
  PlainHttpFallback plain_http_fallback = PlainHttpFallback::kNever;
};

struct HttpResponse {
  int status = 0;
  HeaderList headers;  // names lowercased, in arrival order
  std::string body;
  // Set when the exchange was repeated over plain http (PlainHttpFallback): why the https
  // attempt failed. The response is then that of the http:// URL.
  std::optional<Error> https_failure;

  // The first value of header `name` (lowercase), if any.
  std::optional<std::string> Header(std::string_view name) const;
  // Every value of header `name` (lowercase).
  std::vector<std::string> Headers(std::string_view name) const;
};

// Receives a successful (2xx) response body as it arrives, with the response's status and
// headers (`head.body` is empty). Returning an error aborts the exchange with that error.
using BodySink = std::function<Result<void>(const HttpResponse& head, std::string_view chunk)>;

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;

  // Performs one exchange. Blocks on the network; honours `cancel`. When `sink` is given, a 2xx
  // body goes to it instead of HttpResponse::body. A response with any status is a success of
  // the transport. With request.plain_http_fallback, an https:// exchange that reaches a server
  // that does not speak TLS is sent once more over http:// and its response carries
  // `https_failure`. Errors are for exchanges that did not complete:
  //   kUnavailable       no exchange took place: DNS, connection refused, TLS handshake failed;
  //                      or a watchdog gave up on a stalled or too slow exchange (the message
  //                      names the limit): the endpoint is not worth retrying right now;
  //   kAborted           the exchange broke off mid-way (reset, truncated response);
  //   kDeadlineExceeded  connect timeout;
  //   kInvalidArgument   the request's TLS files are unusable;
  //   kResourceExhausted a 2xx body over max_buffered_body (without a sink), or an oversized
  //                      response head;
  //   kCancelled, or the sink's own error.
  virtual Result<HttpResponse> RoundTrip(const HttpRequest& request, const BodySink* sink,
                                         const CancelToken& cancel) = 0;
};

}  // namespace berth::registry
