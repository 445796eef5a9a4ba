// File: testing/fault_proxy.h
//
// FaultProxy is an HTTP/1.1 reverse proxy on 127.0.0.1 that sits between a client under test and
// a plain-HTTP upstream (a TestRegistry, a TokenServer, any HttpServer) and injects faults:
// canned error answers (500, 503, 429 with Retry-After) without contacting the upstream, delays,
// slow-drip bodies, connections dropped after N body bytes, and a flipped body byte. It also
// counts the requests it sees, per path, so tests can assert how often a client fetched a blob.
//
// Forwarding: each client request (head, and body by Content-Length or chunked, re-sent with a
// Content-Length) goes to the upstream on a new connection with "Connection: close". The Host
// header is passed unchanged, so a registry builds its Location URLs to point back at the proxy.
// "Expect: 100-continue" is answered by the proxy. The response is streamed back to the client:
// with its Content-Length, re-chunked if the upstream sent it chunked, or delimited by closing the
// client connection if the upstream delimited it by closing. Client connections are kept alive
// otherwise. An unreachable upstream gets the client a 502.
//
// Rules: each request is matched against the rules in the order they were added. A rule matches
// on method (exact, empty = any) and on the request target, path plus query (substring and/or
// ECMAScript regex search, empty = any). Every rule counts the requests it matches; its action
// applies to matching requests number `first`, first+1, …, first+count-1 (1-based; count 0 = no
// end). The first rule whose window covers a request applies; at most one action per request.
// Rules may be added and removed while traffic flows.
//
//   auto proxy = FaultProxy::Start(registry->host());
//   proxy->AddRule({.method = "GET", .target_contains = "/blobs/", .first = 1, .count = 2,
//                   .action = FaultAction::Respond(503)});   // the first two blob GETs fail
//   proxy->AddRule({.target_contains = "/blobs/",
//                   .action = FaultAction::DropAfterBytes(100)});  // later ones are cut short
//   ... client pulls through proxy->url() ...
//   EXPECT_EQ(proxy->RequestCount("GET", "/blobs/"), 3u);
//
// Thread safety: all public methods may be called from any thread while the proxy runs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "testing/http_fetch.h"
#include "testing/tcp_server.h"

namespace berth::testing {

// What to do to a matched request. Fields combine: e.g. a delay plus a drop. The factory
// functions build the common single faults.
struct FaultAction {
  // Wait this long before anything else (before contacting the upstream or answering).
  std::chrono::milliseconds delay{0};
  // Answer with this status, headers and body without contacting the upstream.
  std::optional<int> respond_status;
  HeaderList respond_headers;
  std::string respond_body;
  // Read the request, then close the client connection without any answer.
  bool close_without_response = false;
  // Forward, but close the client connection after this many response body bytes (0 = after
  // the response head). The client sees a short body.
  std::optional<uint64_t> drop_after_bytes;
  // Forward, flipping every bit of the response body byte at this offset (if the body is that
  // long). The client sees the declared length with different content.
  std::optional<uint64_t> corrupt_byte_at;
  // Slow drip: send the response body in pieces of `drip_bytes` with `drip_interval` before each.
  size_t drip_bytes = 0;
  std::chrono::milliseconds drip_interval{0};
  // A stalled server: forward, but after this many response body bytes (0 = right after the
  // response head) send nothing more, holding the connection open until the client closes it
  // or the proxy stops.
  std::optional<uint64_t> stall_after_bytes;

  static FaultAction Respond(int status, HeaderList headers = {}, std::string body = "");
  // `status` (429 or 503) with "Retry-After: <seconds>".
  static FaultAction RespondWithRetryAfter(int status, int retry_after_seconds);
  static FaultAction Delay(std::chrono::milliseconds delay);
  static FaultAction DropAfterBytes(uint64_t bytes);
  static FaultAction CorruptByteAt(uint64_t offset);
  static FaultAction SlowDrip(size_t bytes_per_piece, std::chrono::milliseconds interval);
  static FaultAction CloseWithoutResponse();
  static FaultAction StallAfterBytes(uint64_t bytes);
};

struct FaultRule {
  // Exact method ("GET", "HEAD"); empty = any.
  std::string method;
  // Substring of the request target (path and query); empty = any.
  std::string target_contains;
  // ECMAScript regex searched in the request target; empty = any.
  std::string target_regex;
  // The action applies to matching requests number first .. first+count-1 (1-based);
  // count 0 means every matching request from `first` on.
  int first = 1;
  int count = 0;
  FaultAction action;
};

// One request the proxy handled, for assertions and failure messages. The entry is complete by
// the time the client has read the corresponding bytes.
struct ProxiedRequest {
  std::string method;
  std::string target;
  // Status sent to the client (0 if none was sent: close_without_response, upstream failure
  // before the head).
  int status = 0;
  // Id of the rule applied, or 0.
  int rule_id = 0;
  // Response body bytes sent to the client.
  uint64_t body_bytes_sent = 0;
  // A write to the client failed: it closed the connection before the response was complete
  // (a client that gave up on a download).
  bool client_gone = false;
};

struct FaultProxyOptions {
  // How long to wait for the upstream to accept a connection, and for a response head.
  std::chrono::milliseconds upstream_timeout = std::chrono::seconds(30);
  // Requests with larger bodies are refused with 413.
  size_t max_request_body_bytes = size_t{1} << 30;
};

class FaultProxy {
 public:
  // Starts a proxy for `upstream` ("host:port", plain HTTP) on a free loopback port.
  // kInvalidArgument for a malformed upstream; errno errors if it cannot listen.
  static Result<std::unique_ptr<FaultProxy>> Start(std::string upstream,
                                                   FaultProxyOptions options = {});

  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;
  ~FaultProxy();  // Stop()s.

  // Stops accepting, cuts open client and upstream connections, interrupts delays, joins all
  // threads. Idempotent.
  void Stop();

  uint16_t port() const { return tcp_->port(); }
  // "127.0.0.1:PORT".
  std::string host() const;
  // "http://127.0.0.1:PORT".
  std::string url() const;
  const std::string& upstream() const { return upstream_; }

  // Adds a rule; returns its id (> 0). kInvalidArgument for a bad regex or first < 1.
  Result<int> AddRule(FaultRule rule);
  // Removes one rule (no-op for an unknown id), or all of them.
  void RemoveRule(int id);
  void ClearRules();
  // How many requests a rule matched (whether or not its action applied) and how many times its
  // action was applied.
  uint64_t RuleMatches(int id) const;
  uint64_t RuleHits(int id) const;

  // Requests received (heads fully read), all of them or those with `method` (empty = any)
  // whose target contains `target_contains`.
  uint64_t RequestCount() const;
  uint64_t RequestCount(std::string_view method, std::string_view target_contains) const;
  // Requests per "METHOD path" (path without the query), e.g. {"GET /v2/": 2}.
  std::map<std::string, uint64_t> RequestsPerPath() const;
  // Every request so far, in order of arrival; status and bytes are filled in when it finishes.
  std::vector<ProxiedRequest> requests() const;
  // Response body bytes sent for the requests with `method` (empty = any) whose target contains
  // `target_contains`: e.g. how many bytes of a blob a client downloaded, across retries.
  uint64_t BodyBytesSent(std::string_view method, std::string_view target_contains) const;
  // The request log, one line each ("GET /v2/… -> 200 (123 bytes, rule 1)"), for failure
  // messages.
  std::string DescribeRequests() const;
  // The most requests with `method` (empty = any) whose target contains `target_contains` that
  // were in progress at the same time, a request being in progress from the moment its head was
  // read until its response was sent in full or its connection ended. Since the client starts
  // a request before the proxy sees it and ends it after, this never overstates the client's
  // own concurrency.
  uint64_t MaxConcurrentRequests(std::string_view method, std::string_view target_contains) const;
  // Forgets counters and the request log (rules and their counters stay).
  void ResetCounters();

 private:
  struct Rule {
    int id;
    FaultRule spec;
    std::optional<std::regex> regex;
    uint64_t matches = 0;
    uint64_t hits = 0;
  };

  FaultProxy(std::string upstream_host, uint16_t upstream_port, FaultProxyOptions options);
  void Serve(int fd);
  // Records the request and picks the action to apply (if any). Returns the request's sequence
  // number for Record().
  uint64_t Admit(const std::string& method, const std::string& target,
                 std::optional<FaultAction>& action, int& rule_id);
  // Updates a request's log entry. Called *before* the corresponding bytes are sent, so a client
  // that has read a response always finds it accounted for.
  void Record(uint64_t sequence, int status, uint64_t body_bytes);
  void RecordClientGone(uint64_t sequence);
  // Sleeps up to `duration`; false if the proxy is stopping.
  bool Sleep(std::chrono::milliseconds duration);
  void TrackUpstream(int fd, bool add);
  // Marks request `sequence` as no longer in progress (see MaxConcurrentRequests).
  void RecordFinished(uint64_t sequence);

  const std::string upstream_;
  const std::string upstream_host_;
  const uint16_t upstream_port_;
  const FaultProxyOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable stop_signal_;
  bool stopping_ = false;                                             // guarded by mutex_
  int next_rule_id_ = 1;                                              // guarded by mutex_
  std::vector<Rule> rules_;                                           // guarded by mutex_
  std::map<int, std::pair<uint64_t, uint64_t>> removed_rule_counts_;  // guarded by mutex_
  uint64_t next_sequence_ = 0;                                        // guarded by mutex_
  std::map<uint64_t, ProxiedRequest> log_;  // by sequence; guarded by mutex_
  // Requests starting (true) and finishing (false), in order; guarded by mutex_.
  std::vector<std::pair<uint64_t, bool>> progress_events_;
  std::set<int> upstream_fds_;  // guarded by mutex_
  std::unique_ptr<TcpServer> tcp_;
};

}  // namespace berth::testing
