#include "berth/registry/curl_transport.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <iterator>
#include <mutex>

#include "berth/base/c_handle.h"

namespace berth::registry {
namespace {

using UniqueSlist = UniqueHandle<curl_slist, curl_slist_free_all>;

std::once_flag g_curl_init;

std::string Lowercase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
    text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  return text;
}

using SteadyClock = std::chrono::steady_clock;

// The most response head (status line and headers) accepted from a server.
constexpr uint64_t kMaxResponseHeadBytes = 256 << 10;

// "2s", "1500ms", "5m": a duration as a person would write it in the config.
std::string FormatDuration(std::chrono::milliseconds duration) {
  auto ms = duration.count();
  if (ms % 60000 == 0 && ms >= 60000) return fmt::format("{}m", ms / 60000);
  if (ms % 1000 == 0) return fmt::format("{}s", ms / 1000);
  return fmt::format("{}ms", ms);
}

// "100 KiB/s" style: bytes with a binary unit, one decimal when it matters.
std::string FormatBytes(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB"};
  size_t unit = 0;
  while (bytes >= 1024 && unit + 1 < std::size(kUnits)) {
    bytes /= 1024;
    ++unit;
  }
  if (unit == 0 || bytes >= 100 || bytes == static_cast<double>(static_cast<int64_t>(bytes))) {
    return fmt::format("{:.0f} {}", bytes, kUnits[unit]);
  }
  return fmt::format("{:.1f} {}", bytes, kUnits[unit]);
}

// State of one exchange, shared with curl's callbacks (all run on the thread that called
// curl_easy_perform, so no locking).
struct Exchange {
  const HttpRequest* request = nullptr;
  const BodySink* sink = nullptr;
  const CancelToken* cancel = nullptr;
  HttpResponse response;
  std::optional<Error> sink_error;
  bool body_too_large = false;
  // Between a status line and the blank line that ends the head, and the head's size so far.
  bool in_head = false;
  uint64_t head_bytes = 0;
  bool head_too_large = false;
  // An https attempt that showed the server does not speak TLS (see PlainHttpFallback).
  bool server_speaks_no_tls = false;

  // Watchdogs. They start once the connection is up (connect_timeout covers the time before).
  bool connected = false;
  uint64_t received = 0;  // response head and body bytes
  SteadyClock::time_point last_byte;
  SteadyClock::time_point window_start;
  uint64_t window_start_bytes = 0;
  std::optional<Error> watchdog_error;
  Watchdog watchdog = Watchdog::kStall;  // which one set watchdog_error

  void OnBytes(size_t count) {
    received += count;
    last_byte = SteadyClock::now();
  }
};

int OnConnected(void* user, char*, char*, int, int) {
  auto* exchange = static_cast<Exchange*>(user);
  if (!exchange->connected) {
    exchange->connected = true;
    exchange->last_byte = exchange->window_start = SteadyClock::now();
    exchange->window_start_bytes = exchange->received;
  }
  return CURL_PREREQFUNC_OK;
}

// Checks the exchange's watchdogs; sets watchdog_error when one of them gives up.
void CheckWatchdogs(Exchange& exchange) {
  if (!exchange.connected) return;
  const HttpRequest& request = *exchange.request;
  const SteadyClock::time_point now = SteadyClock::now();
  const std::string where = fmt::format("{} {}", request.method, request.url);
  if (request.progress_timeout.count() > 0 &&
      now - exchange.last_byte >= request.progress_timeout) {
    exchange.watchdog = Watchdog::kStall;
    exchange.watchdog_error = Error(
        ErrorCode::kUnavailable,
        fmt::format("{}: stalled: no data received for {} (image_pull_progress_timeout) after {} "
                    "bytes; giving up on this endpoint (check the registry or mirror and the "
                    "network to it, or raise image_pull_progress_timeout)",
                    where, FormatDuration(request.progress_timeout), exchange.received));
    return;
  }
  if (request.min_bytes_per_second > 0 && request.min_speed_window.count() > 0 &&
      now - exchange.window_start >= request.min_speed_window) {
    const double seconds = std::chrono::duration<double>(now - exchange.window_start).count();
    const uint64_t got = exchange.received - exchange.window_start_bytes;
    const double needed = static_cast<double>(request.min_bytes_per_second) * seconds;
    if (static_cast<double>(got) < needed) {
      exchange.watchdog = Watchdog::kTooSlow;
      exchange.watchdog_error = Error(
          ErrorCode::kUnavailable,
          fmt::format("{}: too slow: {} received in the last {} ({}/s), below the minimum of "
                      "{}/s (min_download_speed over min_download_speed_window); giving up on "
                      "this endpoint (check the link to it, or lower min_download_speed)",
                      where, FormatBytes(static_cast<double>(got)),
                      FormatDuration(request.min_speed_window),
                      FormatBytes(static_cast<double>(got) / seconds),
                      FormatBytes(static_cast<double>(request.min_bytes_per_second))));
      return;
    }
    exchange.window_start = now;
    exchange.window_start_bytes = exchange.received;
  }
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* exchange = static_cast<Exchange*>(user);
  exchange->OnBytes(size * count);
  std::string_view line(data, size * count);
  line = Trim(line);
  if (line.empty()) {
    exchange->in_head = false;
    return size * count;
  }
  // A hostile server must not make us hold an endless head (curl bounds each line, not the sum).
  exchange->head_bytes += size * count;
  if (exchange->head_bytes > kMaxResponseHeadBytes) {
    exchange->head_too_large = true;
    return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  }
  if (line.starts_with("HTTP/")) {
    // A new status line (after a 100 Continue, or the final one): start the header list anew.
    exchange->in_head = true;
    exchange->head_bytes = size * count;
    exchange->response.headers.clear();
    size_t space = line.find(' ');
    if (space != std::string_view::npos) {
      exchange->response.status = std::atoi(std::string(line.substr(space + 1, 3)).c_str());
    }
    return size * count;
  }
  size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    exchange->response.headers.emplace_back(Lowercase(Trim(line.substr(0, colon))),
                                            std::string(Trim(line.substr(colon + 1))));
  }
  return size * count;
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* exchange = static_cast<Exchange*>(user);
  size_t length = size * count;
  exchange->OnBytes(length);
  int status = exchange->response.status;
  bool success = status >= 200 && status < 300;
  if (success && exchange->sink != nullptr) {
    Result<void> accepted = (*exchange->sink)(exchange->response, std::string_view(data, length));
    if (!accepted) {
      exchange->sink_error = std::move(accepted).error();
      return 0;  // aborts the transfer with CURLE_WRITE_ERROR
    }
    return length;
  }
  std::string& body = exchange->response.body;
  size_t limit = exchange->request->max_buffered_body;
  if (body.size() + length > limit) {
    if (success) {
      exchange->body_too_large = true;
      return 0;
    }
    body.append(data, limit - body.size());  // an error body: keep its start, drop the rest
    return length;
  }
  body.append(data, length);
  return length;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* exchange = static_cast<Exchange*>(user);
  if (exchange->cancel->cancelled()) return 1;
  CheckWatchdogs(*exchange);
  return exchange->watchdog_error ? 1 : 0;
}

// Adds the PEM certificates of the CA files to curl's trust store, keeping the system CAs.
CURLcode AddCaFiles(CURL*, void* ssl_ctx, void* user) {
  const auto* paths = static_cast<const std::vector<std::string>*>(user);
  X509_STORE* store = SSL_CTX_get_cert_store(static_cast<SSL_CTX*>(ssl_ctx));
  for (const std::string& path : *paths) {
    FILE* file = std::fopen(path.c_str(), "r");
    if (file == nullptr) return CURLE_SSL_CACERT_BADFILE;
    int added = 0;
    while (X509* cert = PEM_read_X509(file, nullptr, nullptr, nullptr)) {
      // An already present certificate is not an error (the same CA listed twice).
      X509_STORE_add_cert(store, cert);
      ++added;
      X509_free(cert);
    }
    ERR_clear_error();  // the loop ends on a "no start line" error, which is expected
    std::fclose(file);
    if (added == 0) return CURLE_SSL_CACERT_BADFILE;
  }
  return CURLE_OK;
}

// Whether a failed https exchange showed that the server does not speak TLS: it answered the
// ClientHello with bytes that are not a TLS record (OpenSSL's "wrong version number" on the first
// record: a plain HTTP server's "HTTP/1.1 400 ..."), or the TCP connection was made but the
// handshake never finished before the connect timeout. containerd's isTLSError: a record header
// of "HTTP/", or "TLS handshake timeout".
bool ServerSpeaksNoTls(CURL* easy, CURLcode code, std::string_view detail,
                       const HttpRequest& request) {
  if (!request.url.starts_with("https://")) return false;
  if (code == CURLE_SSL_CONNECT_ERROR) {
    return detail.find("wrong version number") != std::string_view::npos;
  }
  if (code == CURLE_OPERATION_TIMEDOUT) {
    // OpenSSL's backend names a timeout in the handshake so; curl 7.88 records no connect time
    // until the whole connection, TLS included, is up.
    if (detail.find("SSL connection timeout") != std::string_view::npos) return true;
    curl_off_t connected_us = 0;
    curl_off_t tls_done_us = 0;
    curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &connected_us);
    curl_easy_getinfo(easy, CURLINFO_APPCONNECT_TIME_T, &tls_done_us);
    return connected_us > 0 && tls_done_us == 0;
  }
  return false;
}

// One case per curl code, read as a table: what the code means for a registry request and what
// to do about it. Split up, the mapping would no longer be seen whole.
// NOLINTNEXTLINE(readability-function-size)
Error TransportError(CURLcode code, const char* detail, const HttpRequest& request,
                     const CancelToken& cancel, Exchange& exchange) {
  std::string where = fmt::format("{} {}", request.method, request.url);
  std::string why = detail[0] != '\0' ? detail : curl_easy_strerror(code);
  switch (code) {
    case CURLE_ABORTED_BY_CALLBACK:
      if (exchange.watchdog_error && !cancel.cancelled())
        return std::move(*exchange.watchdog_error);
      if (auto checked = cancel.Check(); !checked) return checked.error().WithContext(where);
      return Error(ErrorCode::kCancelled, fmt::format("{}: cancelled", where));
    case CURLE_OUT_OF_MEMORY:
      // curl refuses a single header line over its own limit (100 KiB) with this code.
      if (exchange.in_head) {
        return Error(ErrorCode::kResourceExhausted,
                     fmt::format("{}: a response header is over curl's 100 KiB limit; the "
                                 "server is broken or hostile",
                                 where));
      }
      return Error(ErrorCode::kResourceExhausted, fmt::format("{}: {}", where, why));
    case CURLE_WRITE_ERROR:
      if (exchange.head_too_large) {
        return Error(ErrorCode::kResourceExhausted,
                     fmt::format("{}: response headers are over the {} byte limit; the server "
                                 "is broken or hostile",
                                 where, kMaxResponseHeadBytes));
      }
      if (exchange.sink_error) return std::move(*exchange.sink_error).WithContext(where);
      if (exchange.body_too_large) {
        return Error(ErrorCode::kResourceExhausted,
                     fmt::format("{}: response body is over the {} byte limit", where,
                                 request.max_buffered_body));
      }
      return Error(ErrorCode::kInternal, fmt::format("{}: {}", where, why));
    case CURLE_OPERATION_TIMEDOUT:
      if (exchange.server_speaks_no_tls) {
        return Error(ErrorCode::kDeadlineExceeded,
                     fmt::format("{}: TLS handshake timed out: {}", where, why));
      }
      return Error(ErrorCode::kDeadlineExceeded, fmt::format("{}: {}", where, why));
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}: TLS setup failed: {} (check the ca/cert/key files "
                               "configured for this host)",
                               where, why));
    case CURLE_PEER_FAILED_VERIFICATION:
      return Error(ErrorCode::kUnavailable,
                   fmt::format("{}: TLS handshake failed: the server's certificate is not "
                               "trusted: {} (configure the registry's CA with ca_file, or "
                               "insecure_skip_verify for a registry you trust; a server that "
                               "speaks TLS is never retried over plain http)",
                               where, why));
    case CURLE_SSL_CONNECT_ERROR:
      if (exchange.server_speaks_no_tls) {
        return Error(ErrorCode::kUnavailable,
                     fmt::format("{}: TLS handshake failed: the server does not speak TLS: {} "
                                 "(it answered like a plain HTTP server; if it is one, name the "
                                 "endpoint with http://)",
                                 where, why));
      }
      return Error(ErrorCode::kUnavailable,
                   fmt::format("{}: TLS handshake failed: {} (configure the registry's CA with "
                               "ca_file, or a client certificate if it requires one)",
                               where, why));
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
      // With TLS 1.3 a server that rejects the client (no or a wrong client certificate) says so
      // with an alert that arrives on the first read, after the handshake looked complete. That
      // is a TLS failure of the endpoint, not an interrupted transfer: do not retry it.
      if (exchange.response.status == 0 && request.url.starts_with("https://") &&
          (why.find("SSL") != std::string::npos || why.find("alert") != std::string::npos ||
           why.find("getpeername") != std::string::npos)) {
        return Error(ErrorCode::kUnavailable,
                     fmt::format("{}: TLS connection rejected: {} (if the registry requires a "
                                 "client certificate, configure cert_file and key_file for it)",
                                 where, why));
      }
      return Error(ErrorCode::kAborted, fmt::format("{}: transfer interrupted: {}", where, why));
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return Error(ErrorCode::kAborted, fmt::format("{}: transfer interrupted: {}", where, why));
    default:
      return Error(ErrorCode::kUnavailable, fmt::format("{}: {}", where, why));
  }
}

}  // namespace

std::optional<std::string> HttpResponse::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return std::nullopt;
}

std::vector<std::string> HttpResponse::Headers(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [key, value] : headers) {
    if (key == name) out.push_back(value);
  }
  return out;
}

struct CurlTransport::Shared {
  CURLSH* share = nullptr;
  std::array<std::mutex, CURL_LOCK_DATA_LAST> locks;
  std::mutex pool_mutex;
  std::vector<CURL*> pool;

  ~Shared() {
    for (CURL* easy : pool) curl_easy_cleanup(easy);
    if (share != nullptr) curl_share_cleanup(share);
  }

  CURL* Acquire() {
    {
      std::lock_guard lock(pool_mutex);
      if (!pool.empty()) {
        CURL* easy = pool.back();
        pool.pop_back();
        curl_easy_reset(easy);
        return easy;
      }
    }
    return curl_easy_init();
  }

  void Release(CURL* easy) {
    std::lock_guard lock(pool_mutex);
    pool.push_back(easy);
  }
};

Result<std::unique_ptr<CurlTransport>> CurlTransport::Create(RegistryObserver* observer) {
  std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_ALL); });
  auto shared = std::make_unique<Shared>();
  shared->share = curl_share_init();
  if (shared->share == nullptr) return Fail(ErrorCode::kInternal, "curl_share_init failed");
  curl_share_setopt(
      shared->share, CURLSHOPT_LOCKFUNC,
      +[](CURL*, curl_lock_data data, curl_lock_access, void* user) {
        static_cast<Shared*>(user)->locks[data].lock();
      });
  curl_share_setopt(
      shared->share, CURLSHOPT_UNLOCKFUNC, +[](CURL*, curl_lock_data data, void* user) {
        static_cast<Shared*>(user)->locks[data].unlock();
      });
  curl_share_setopt(shared->share, CURLSHOPT_USERDATA, shared.get());
  curl_share_setopt(shared->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(shared->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_share_setopt(shared->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
  return std::unique_ptr<CurlTransport>(new CurlTransport(std::move(shared), observer));
}

CurlTransport::CurlTransport(std::unique_ptr<Shared> shared, RegistryObserver* observer)
    : shared_(std::move(shared)), observer_(observer) {}
CurlTransport::~CurlTransport() = default;

// One exchange as Perform() ran it, and whether it showed the server does not speak TLS.
struct CurlTransport::Attempt {
  Result<HttpResponse> response;
  bool server_speaks_no_tls = false;
};

Result<HttpResponse> CurlTransport::RoundTrip(const HttpRequest& request, const BodySink* sink,
                                              const CancelToken& cancel) {
  Attempt attempt = Perform(request, sink, cancel);
  if (!attempt.server_speaks_no_tls ||
      request.plain_http_fallback != PlainHttpFallback::kWhenServerIsNotTls) {
    return std::move(attempt.response);
  }
  // Nothing reached the sink: the https attempt ended in the handshake, before any response.
  HttpRequest plain = request;
  plain.url = "http://" + request.url.substr(std::string_view("https://").size());
  plain.plain_http_fallback = PlainHttpFallback::kNever;
  Attempt fallback = Perform(plain, sink, cancel);
  if (!fallback.response) {
    return Fail(
        std::move(fallback.response)
            .error()
            .WithContext(fmt::format("{} does not speak TLS; over plain http", request.url)));
  }
  fallback.response->https_failure = std::move(attempt.response).error();
  return std::move(fallback.response);
}

// Mostly the curl_easy_setopt list of one request, in the order curl documents the options;
// the rest is perform and the mapping of its outcome.
// NOLINTNEXTLINE(readability-function-size)
CurlTransport::Attempt CurlTransport::Perform(const HttpRequest& request, const BodySink* sink,
                                              const CancelToken& cancel) {
  if (Result<void> checked = cancel.Check(); !checked) {
    return {.response = Fail(std::move(checked).error())};
  }
  CURL* easy = shared_->Acquire();
  if (easy == nullptr) return {.response = Fail(ErrorCode::kInternal, "curl_easy_init failed")};
  struct Releaser {
    Shared* shared;
    CURL* easy;
    ~Releaser() { shared->Release(easy); }
  } releaser{shared_.get(), easy};

  Exchange exchange;
  exchange.request = &request;
  exchange.sink = sink;
  exchange.cancel = &cancel;
  char error_buffer[CURL_ERROR_SIZE] = {0};

  UniqueSlist headers;
  for (const auto& [name, value] : request.headers) {
    std::string line = name;
    line.append(": ").append(value);
    headers.reset(curl_slist_append(headers.release(), line.c_str()));
  }
  headers.reset(curl_slist_append(headers.release(), "Expect:"));

  curl_easy_setopt(easy, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(easy, CURLOPT_SHARE, shared_->share);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(easy, CURLOPT_USERAGENT, "berth/0.1");
  if (request.method == "HEAD") {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  } else if (request.method == "POST") {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(request.body.size()));
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request.body.c_str());
  } else if (request.method != "GET") {
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    if (!request.body.empty()) {
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(request.body.size()));
      curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request.body.c_str());
    }
  }
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &exchange);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &exchange);
  curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, &OnProgress);
  curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &exchange);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(request.connect_timeout.count()));
  // The stall and throughput watchdogs run in OnProgress (curl calls it at least once a second
  // while a transfer is idle), from the moment the connection is up.
  curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, &OnConnected);
  curl_easy_setopt(easy, CURLOPT_PREREQDATA, &exchange);
  curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, 256L * 1024L);

  const TlsOptions& tls = request.tls;
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, tls.insecure_skip_verify ? 0L : 1L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, tls.insecure_skip_verify ? 0L : 2L);
  if (!tls.ca_files.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSL_CTX_FUNCTION, &AddCaFiles);
    curl_easy_setopt(easy, CURLOPT_SSL_CTX_DATA, &tls.ca_files);
  }
  if (!tls.cert_file.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLCERT, tls.cert_file.c_str());
    const std::string& key = tls.key_file.empty() ? tls.cert_file : tls.key_file;
    curl_easy_setopt(easy, CURLOPT_SSLKEY, key.c_str());
  }

  CURLcode code = curl_easy_perform(easy);
  if (code != CURLE_OK) {
    if (exchange.watchdog_error && observer_ != nullptr && !cancel.cancelled()) {
      observer_->WatchdogTripped(exchange.watchdog);
    }
    exchange.server_speaks_no_tls = ServerSpeaksNoTls(easy, code, error_buffer, request);
    return {.response = Fail(TransportError(code, error_buffer, request, cancel, exchange)),
            .server_speaks_no_tls = exchange.server_speaks_no_tls};
  }
  long status = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  exchange.response.status = static_cast<int>(status);
  return {.response = std::move(exchange.response)};
}

}  // namespace berth::registry
