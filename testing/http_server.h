// File: testing/http_server.h
//
// HttpServer is a small HTTP/1.1 server on 127.0.0.1 (or another address) for test peers: the token
// server, and later object-storage redirect targets or fake endpoints. It listens on a port the
// kernel picks (no port races), runs an accept thread plus one thread per connection, reads each
// request in full (Content-Length or chunked bodies, "Expect: 100-continue" answered), calls the
// handler, and writes the response with a Content-Length. Connections are kept alive unless the
// client asks for "Connection: close", speaks HTTP/1.0, or keep-alive is disabled in the options.
//
//   BERTH_ASSIGN_OR_RETURN(auto server, HttpServer::Start([](const HttpServerRequest& request) {
//     return HttpServerResponse{.status = 200, .body = "hello " + request.path};
//   }));
//   HttpFetch({.url = server->url() + "/x"});
//
// Lifetime: Stop() (or the destructor) closes the listener, shuts down open connections, and
// joins every thread; after it returns the handler is no longer called.
//
// Thread safety: the handler is called concurrently from connection threads and must be
// thread-safe. Public methods may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "testing/http_fetch.h"
#include "testing/tcp_server.h"

namespace berth::testing {

struct HttpServerRequest {
  std::string method;
  // The raw request target ("/token?service=x&scope=…"), and its parts: the path
  // (percent-encoding kept) and the raw query string without '?'.
  std::string target;
  std::string path;
  std::string query;
  std::string version;
  HeaderList headers;
  std::string body;
  // The client's address, "127.0.0.1:54321".
  std::string peer;

  std::optional<std::string> Header(std::string_view name) const {
    return FindHeader(headers, name);
  }
  // Decoded query parameters named `name`, in order (a parameter may repeat, like "scope").
  std::vector<std::string> QueryValues(std::string_view name) const;
  // The first decoded query parameter named `name`.
  std::optional<std::string> QueryValue(std::string_view name) const;
};

struct HttpServerResponse {
  int status = 200;
  // Sent as given. Content-Length is added unless present; Connection is managed by the server.
  HeaderList headers;
  std::string body;
};

using HttpHandler = std::function<HttpServerResponse(const HttpServerRequest&)>;

struct HttpServerOptions {
  // 0 picks a free port (recommended).
  uint16_t port = 0;
  // The IPv4 address to listen on, in the network namespace of the thread calling Start()
  // (net_namespace.h: a fake node in a test network).
  std::string address = "127.0.0.1";
  // Requests with larger bodies get 413 and the connection is closed.
  size_t max_body_bytes = 256 << 20;
  bool keep_alive = true;
};

class HttpServer {
 public:
  // Binds, starts the accept thread and returns; the server is ready for connections when this
  // returns. Errors are errno errors from bind/listen.
  static Result<std::unique_ptr<HttpServer>> Start(HttpHandler handler,
                                                   const HttpServerOptions& options = {});

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer();

  // Stops accepting, closes open connections and joins all threads. Idempotent. Must not be
  // called from inside the handler.
  void Stop();

  uint16_t port() const { return tcp_->port(); }
  // "127.0.0.1:PORT" (options.address).
  std::string host() const;
  // "http://127.0.0.1:PORT".
  std::string url() const;
  // Requests answered so far (handler calls plus 4xx answers to malformed requests).
  uint64_t requests_served() const { return requests_served_.load(); }

 private:
  HttpServer(HttpHandler handler, HttpServerOptions options)
      : handler_(std::move(handler)), options_(std::move(options)) {}
  void Serve(int fd, const std::string& peer);

  const HttpHandler handler_;
  const HttpServerOptions options_;
  std::atomic<uint64_t> requests_served_{0};
  std::atomic<bool> stopping_{false};
  std::unique_ptr<TcpServer> tcp_;
};

}  // namespace berth::testing
