// File: testing/http_fetch.h
//
// HttpFetch performs one HTTP request with libcurl and returns the whole response. It is the
// tests' own client for poking at registries and test servers (readiness probes, token fetches,
// raw blob uploads); it is deliberately independent of berth's registry client, so a test can
// check that client against a second implementation.
//
//   BERTH_ASSIGN_OR_RETURN(HttpFetchResponse response,
//                          HttpFetch({.url = registry.url() + "/v2/",
//                                     .ca_file = registry.ca_file()}));
//   EXPECT_EQ(response.status, 200);
//
// Thread safety: HttpFetch may be called from any number of threads at once.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/base/redact.h"
#include "berth/base/result.h"

namespace berth::testing {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Returns the value of the first header named `name` (case-insensitive), if any.
std::optional<std::string> FindHeader(const HeaderList& headers, std::string_view name);

struct HttpFetchRequest {
  std::string method = "GET";
  std::string url;
  // Extra request headers (name, value). A request with a body gets
  // "Content-Type: application/octet-stream" unless one is given here (forms must say
  // "application/x-www-form-urlencoded" explicitly).
  HeaderList headers;
  // Request body; sent with Content-Length for any method when non-empty (or when `send_body`).
  std::string body;
  bool send_body = false;
  // HTTPS: trust this CA bundle instead of the system store. Empty = system store.
  std::filesystem::path ca_file;
  // HTTPS: when false, the server certificate is not verified at all.
  bool verify_peer = true;
  // HTTPS client certificate and key (PEM). Both or neither.
  std::filesystem::path client_cert_file;
  std::filesystem::path client_key_file;
  // Basic auth when username is non-empty.
  std::string username;
  Secret password;
  // "Authorization: Bearer <token>" when non-empty.
  Secret bearer_token;
  std::chrono::milliseconds timeout = std::chrono::seconds(10);
  bool follow_redirects = false;
};

struct HttpFetchResponse {
  long status = 0;
  // Headers of the final response, in order, names as the server sent them.
  HeaderList headers;
  std::string body;

  std::optional<std::string> Header(std::string_view name) const {
    return FindHeader(headers, name);
  }
};

// Performs the request. Any HTTP status is a success of the call. A transport failure
// (connection refused, TLS handshake refused, timeout, connection dropped mid-body) returns
// kUnavailable (kDeadlineExceeded for a timeout) with curl's error text.
Result<HttpFetchResponse> HttpFetch(const HttpFetchRequest& request);

}  // namespace berth::testing
