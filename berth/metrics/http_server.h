// File: berth/metrics/http_server.h
//
// MetricsServer is the small HTTP/1.1 server behind berthd's metrics_address: it answers
//   GET (or HEAD) /v1/metrics  200, Content-Type text/plain; version=0.0.4, the registry's
//                              Render() (a query string is ignored)
//   any other path             404
//   any other method           405, with Allow: GET, HEAD
//   a malformed request        400; one whose head passes kMaxRequestBytes: 431
// and closes the connection after each response (Connection: close), which Prometheus handles.
//
// Limits, so that a scraper gone wrong (or anyone else who can reach the port) cannot hold the
// daemon: a request head must arrive within the read timeout and fit in kMaxRequestBytes (a
// body is never read), at most kMaxConnections connections are served at once (the next one is
// answered 503 and closed), and a response that cannot be written within the timeout is
// dropped.
//
// Lifecycle: Start() binds and listens before it returns (so a bad address fails berthd's start)
// and serves on threads of its own; Stop() (or the destructor) stops accepting, closes the
// listening socket and waits for the connections being served to end (each within the
// timeout).
//
// Thread safety: Stop() may be called from any thread, once or more.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "berth/base/accept_loop.h"
#include "berth/base/result.h"
#include "berth/base/tcp_listen.h"
#include "berth/base/unique_fd.h"
#include "berth/metrics/metrics.h"

namespace berth::metrics {

inline constexpr std::string_view kMetricsPath = "/v1/metrics";

struct MetricsServerOptions {
  // "host:port": "127.0.0.1:1338", "[::1]:1338", "localhost:1338"; port 0 picks a free one
  // (port() tells which).
  std::string address;
  std::chrono::milliseconds timeout{std::chrono::seconds(10)};
};

class MetricsServer {
 public:
  static constexpr size_t kMaxRequestBytes = 8 << 10;
  static constexpr int kMaxConnections = 4;

  // Listens on options.address and serves `registry` (which must outlive the server). Errors:
  // kInvalidArgument for an address that is not host:port or a host that does not resolve;
  // when the address cannot be bound (in use, not local), ErrnoError's code, naming the
  // address and the config key.
  static Result<std::unique_ptr<MetricsServer>> Start(const Registry& registry,
                                                      const MetricsServerOptions& options);

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  ~MetricsServer();

  // The port listened on.
  uint16_t port() const { return port_; }

  void Stop();

 private:
  MetricsServer(const Registry& registry, uint16_t port, std::chrono::milliseconds timeout)
      : registry_(registry), port_(port), timeout_(timeout) {}

  // Answers one connection; `wake` becomes readable when the server stops.
  void Serve(UniqueFd connection, int wake);

  const Registry& registry_;
  const uint16_t port_;
  const std::chrono::milliseconds timeout_;
  std::unique_ptr<AcceptLoop> loop_;
};

// Splits "host:port" (berth/base/tcp_listen.h, shared with the peer endpoint).
using ::berth::ParseHostPort;

}  // namespace berth::metrics
