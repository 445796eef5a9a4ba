#include "testing/http_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "testing/http_fetch.h"
#include "testing/http_wire.h"
#include "testing/net_util.h"

namespace berth::testing {
namespace {

std::unique_ptr<HttpServer> StartEchoServer(HttpServerOptions options = {}) {
  Result<std::unique_ptr<HttpServer>> server = HttpServer::Start(
      [](const HttpServerRequest& request) {
        HttpServerResponse response{
            .status = 200,
            .headers = {{"X-Method", request.method},
                        {"X-Path", request.path},
                        {"X-Query", request.query},
                        {"X-Scope-Count", std::to_string(request.QueryValues("scope").size())}},
            .body = request.body};
        if (request.path == "/missing") response.status = 404;
        return response;
      },
      options);
  EXPECT_TRUE(server) << server.error().ToString();
  return server ? std::move(*server) : nullptr;
}

// Sends raw bytes and reads one response (head and Content-Length body) from `reader`.
std::pair<ResponseHead, std::string> ReadResponse(SocketReader& reader) {
  Result<std::optional<std::string>> head = reader.ReadHead();
  EXPECT_TRUE(head && head->has_value());
  if (!head || !head->has_value()) return {};
  Result<ResponseHead> parsed = ParseResponseHead(**head);
  EXPECT_TRUE(parsed);
  Result<std::optional<uint64_t>> length = ContentLength(parsed->headers);
  std::string body;
  if (length && length->has_value()) body = reader.ReadExactly(**length).value_or("");
  return {*parsed, body};
}

TEST(HttpServerTest, ServesRequestsWithQueryAndBody) {
  auto server = StartEchoServer();
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->url(), "http://127.0.0.1:" + std::to_string(server->port()));
  Result<HttpFetchResponse> response = HttpFetch(
      {.method = "POST", .url = server->url() + "/p/a?scope=a&scope=b", .body = "payload"});
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "payload");
  EXPECT_EQ(response->Header("X-Method"), "POST");
  EXPECT_EQ(response->Header("X-Path"), "/p/a");
  EXPECT_EQ(response->Header("X-Query"), "scope=a&scope=b");
  EXPECT_EQ(response->Header("X-Scope-Count"), "2");

  Result<HttpFetchResponse> missing = HttpFetch({.url = server->url() + "/missing"});
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(server->requests_served(), 2u);
}

TEST(HttpServerTest, KeepsConnectionsAliveAndHonoursClose) {
  auto server = StartEchoServer();
  ASSERT_NE(server, nullptr);
  Result<UniqueFd> socket = ConnectTcp("127.0.0.1", server->port());
  ASSERT_TRUE(socket);
  SocketReader reader(socket->get());
  ASSERT_TRUE(SendAll(socket->get(), "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto [first, first_body] = ReadResponse(reader);
  EXPECT_EQ(FindHeader(first.headers, "X-Path"), "/one");
  EXPECT_FALSE(HasHeaderToken(first.headers, "Connection", "close"));
  ASSERT_TRUE(SendAll(socket->get(), "GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  auto [second, second_body] = ReadResponse(reader);
  EXPECT_EQ(FindHeader(second.headers, "X-Path"), "/two");
  EXPECT_TRUE(HasHeaderToken(second.headers, "Connection", "close"));
  EXPECT_EQ(*reader.ReadSome(10), "") << "the server closes after Connection: close";
}

TEST(HttpServerTest, AcceptsChunkedBodiesAndExpectContinue) {
  auto server = StartEchoServer();
  ASSERT_NE(server, nullptr);
  Result<UniqueFd> socket = ConnectTcp("127.0.0.1", server->port());
  ASSERT_TRUE(socket);
  SocketReader reader(socket->get());
  ASSERT_TRUE(SendAll(socket->get(),
                      "PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      "Expect: 100-continue\r\n\r\n"));
  Result<std::optional<std::string>> interim = reader.ReadHead();
  ASSERT_TRUE(interim && interim->has_value());
  EXPECT_EQ(**interim, "HTTP/1.1 100 Continue");
  ASSERT_TRUE(SendAll(socket->get(), "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"));
  auto [head, body] = ReadResponse(reader);
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(body, "abcde");
}

TEST(HttpServerTest, HeadResponsesHaveNoBody) {
  Result<std::unique_ptr<HttpServer>> server = HttpServer::Start([](const HttpServerRequest&) {
    return HttpServerResponse{.status = 200, .body = "0123456789"};
  });
  ASSERT_TRUE(server);
  Result<HttpFetchResponse> response = HttpFetch({.method = "HEAD", .url = (*server)->url() + "/"});
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->Header("Content-Length"), "10");
  EXPECT_EQ(response->body, "");
}

TEST(HttpServerTest, HandlerExceptionBecomes500) {
  Result<std::unique_ptr<HttpServer>> server = HttpServer::Start(
      [](const HttpServerRequest&) -> HttpServerResponse { throw std::runtime_error("boom"); });
  ASSERT_TRUE(server);
  Result<HttpFetchResponse> response = HttpFetch({.url = (*server)->url() + "/"});
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 500);
}

TEST(HttpServerTest, RefusesOversizedBodies) {
  auto server = StartEchoServer({.max_body_bytes = 4});
  ASSERT_NE(server, nullptr);
  Result<HttpFetchResponse> response =
      HttpFetch({.method = "POST", .url = server->url() + "/", .body = "too large"});
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 413);
}

TEST(HttpServerTest, StopClosesIdleKeepAliveConnections) {
  auto server = StartEchoServer();
  ASSERT_NE(server, nullptr);
  Result<UniqueFd> socket = ConnectTcp("127.0.0.1", server->port());
  ASSERT_TRUE(socket);
  // Wait until the connection is being served, then stop: Stop must not hang on it.
  ASSERT_TRUE(SendAll(socket->get(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  SocketReader reader(socket->get());
  ReadResponse(reader);
  auto start = std::chrono::steady_clock::now();
  server->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_EQ(*reader.ReadSome(10), "");
  EXPECT_FALSE(HttpFetch({.url = server->url() + "/", .timeout = std::chrono::seconds(2)}));
}

TEST(HttpServerTest, ServesConcurrentClients) {
  std::atomic<int> in_handler{0};
  std::atomic<int> max_in_handler{0};
  Result<std::unique_ptr<HttpServer>> server = HttpServer::Start([&](const HttpServerRequest&) {
    int now = ++in_handler;
    int seen = max_in_handler.load();
    while (now > seen && !max_in_handler.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    --in_handler;
    return HttpServerResponse{.status = 204};
  });
  ASSERT_TRUE(server);
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&] {
      Result<HttpFetchResponse> response = HttpFetch({.url = (*server)->url() + "/"});
      if (response && response->status == 204) ++ok;
    });
  }
  for (std::thread& client : clients) client.join();
  EXPECT_EQ(ok.load(), 4);
  EXPECT_GT(max_in_handler.load(), 1) << "requests should be handled in parallel";
}

}  // namespace
}  // namespace berth::testing
