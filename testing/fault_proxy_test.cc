#include "testing/fault_proxy.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cerrno>
#include <thread>
#include <vector>

#include "testing/http_fetch.h"
#include "testing/http_server.h"
#include "testing/http_wire.h"
#include "testing/net_util.h"
#include "testing/tcp_server.h"

namespace berth::testing {
namespace {

// An upstream that answers every request with a chunked body "hello, chunked world", so the
// proxy's re-chunking path is exercised (HttpServer always sends Content-Length).
std::unique_ptr<TcpServer> StartChunkedUpstream() {
  Result<std::unique_ptr<TcpServer>> server = TcpServer::Start([](int fd, const std::string&) {
    SocketReader reader(fd);
    Result<std::optional<std::string>> head = reader.ReadHead();
    if (!head || !head->has_value()) return;
    (void)SendAll(fd,
                  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                  "7\r\nhello, \r\nd\r\nchunked world\r\n0\r\n\r\n");
  });
  EXPECT_TRUE(server) << server.error().ToString();
  return server ? std::move(*server) : nullptr;
}

class FaultProxyUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<HttpServer>> upstream =
        HttpServer::Start([](const HttpServerRequest& request) {
          return HttpServerResponse{
              .status = 200,
              .headers = {{"X-Upstream-Path", request.path},
                          {"X-Upstream-Host", request.Header("Host").value_or("")},
                          {"X-Upstream-Connection", request.Header("Connection").value_or("")}},
              .body = request.body.empty() ? std::string("0123456789abcdef") : request.body};
        });
    ASSERT_TRUE(upstream) << upstream.error().ToString();
    upstream_ = std::move(*upstream);
    Result<std::unique_ptr<FaultProxy>> proxy = FaultProxy::Start(upstream_->host());
    ASSERT_TRUE(proxy) << proxy.error().ToString();
    proxy_ = std::move(*proxy);
  }

  HttpFetchResponse Fetch(const std::string& path, std::string method = "GET",
                          std::string body = "") {
    Result<HttpFetchResponse> response = HttpFetch(
        {.method = std::move(method), .url = proxy_->url() + path, .body = std::move(body)});
    EXPECT_TRUE(response) << response.error().ToString();
    return response ? *response : HttpFetchResponse{};
  }

  std::unique_ptr<HttpServer> upstream_;
  std::unique_ptr<FaultProxy> proxy_;
};

TEST_F(FaultProxyUnitTest, ForwardsWithHostAndConnectionClose) {
  HttpFetchResponse response = Fetch("/a/b?x=1");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "0123456789abcdef");
  EXPECT_EQ(response.Header("X-Upstream-Path"), "/a/b");
  EXPECT_EQ(response.Header("X-Upstream-Host"), proxy_->host());
  EXPECT_EQ(response.Header("X-Upstream-Connection"), "close");
  EXPECT_EQ(proxy_->requests().at(0).status, 200);
  EXPECT_EQ(proxy_->requests().at(0).body_bytes_sent, 16u);
}

TEST_F(FaultProxyUnitTest, ForwardsRequestBodies) {
  std::string big(300 * 1024, 'z');
  EXPECT_EQ(Fetch("/upload", "PUT", big).body, big);
}

TEST_F(FaultProxyUnitTest, KeepsClientConnectionAlive) {
  Result<UniqueFd> socket = ConnectTcp("127.0.0.1", proxy_->port());
  ASSERT_TRUE(socket);
  SocketReader reader(socket->get());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(SendAll(socket->get(), "GET /k HTTP/1.1\r\nHost: x\r\n\r\n"));
    Result<std::optional<std::string>> head = reader.ReadHead();
    ASSERT_TRUE(head && head->has_value());
    Result<ResponseHead> parsed = ParseResponseHead(**head);
    ASSERT_TRUE(parsed);
    EXPECT_FALSE(HasHeaderToken(parsed->headers, "Connection", "close"));
    EXPECT_EQ(*reader.ReadExactly(16), "0123456789abcdef");
  }
  EXPECT_EQ(proxy_->RequestCount("GET", "/k"), 2u);
}

TEST_F(FaultProxyUnitTest, MatchesByMethodAndRegex) {
  Result<int> rule =
      proxy_->AddRule({.method = "GET",
                       .target_regex = "^/blobs/sha256:[0-9a-f]+$",
                       .action = FaultAction::Respond(404, {{"X-Fault", "yes"}}, "gone")});
  ASSERT_TRUE(rule);
  EXPECT_EQ(Fetch("/blobs/sha256:abc").status, 404);
  EXPECT_EQ(Fetch("/blobs/sha256:abc").Header("X-Fault"), "yes");
  EXPECT_EQ(Fetch("/blobs/sha256:xyz").status, 200);
  EXPECT_EQ(Fetch("/blobs/sha256:abc", "POST", "b").status, 200);
  EXPECT_EQ(proxy_->RuleHits(*rule), 2u);
  proxy_->RemoveRule(*rule);
  EXPECT_EQ(Fetch("/blobs/sha256:abc").status, 200);
  EXPECT_EQ(proxy_->RuleHits(*rule), 2u) << "counts survive removal";
  EXPECT_FALSE(proxy_->AddRule({.target_regex = "("}));
  EXPECT_FALSE(proxy_->AddRule({.first = 0}));
}

TEST_F(FaultProxyUnitTest, FirstApplicableRuleWins) {
  Result<int> first =
      proxy_->AddRule({.target_contains = "/x", .count = 1, .action = FaultAction::Respond(500)});
  Result<int> second =
      proxy_->AddRule({.target_contains = "/x", .action = FaultAction::Respond(503)});
  ASSERT_TRUE(first && second);
  EXPECT_EQ(Fetch("/x").status, 500);
  EXPECT_EQ(Fetch("/x").status, 503);
  EXPECT_EQ(proxy_->RuleMatches(*first), 2u);
  EXPECT_EQ(proxy_->requests().at(1).rule_id, *second);
  proxy_->ClearRules();
  EXPECT_EQ(Fetch("/x").status, 200);
}

TEST_F(FaultProxyUnitTest, CloseWithoutResponseFailsTheClient) {
  ASSERT_TRUE(proxy_->AddRule({.action = FaultAction::CloseWithoutResponse()}));
  Result<HttpFetchResponse> response = HttpFetch({.url = proxy_->url() + "/"});
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code(), ErrorCode::kUnavailable);
}

TEST_F(FaultProxyUnitTest, DropAfterZeroBytesSendsOnlyTheHead) {
  ASSERT_TRUE(proxy_->AddRule({.action = FaultAction::DropAfterBytes(0)}));
  Result<UniqueFd> socket = ConnectTcp("127.0.0.1", proxy_->port());
  ASSERT_TRUE(socket);
  ASSERT_TRUE(SendAll(socket->get(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  SocketReader reader(socket->get());
  Result<std::optional<std::string>> head = reader.ReadHead();
  ASSERT_TRUE(head && head->has_value());
  EXPECT_EQ(*reader.ReadSome(100), "");
}

TEST_F(FaultProxyUnitTest, StopInterruptsDelays) {
  ASSERT_TRUE(proxy_->AddRule({.action = FaultAction::Delay(std::chrono::seconds(30))}));
  std::thread client(
      [&] { (void)HttpFetch({.url = proxy_->url() + "/", .timeout = std::chrono::seconds(40)}); });
  while (proxy_->RequestCount() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto start = std::chrono::steady_clock::now();
  proxy_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  client.join();
}

TEST_F(FaultProxyUnitTest, StallAfterBytesHoldsTheConnectionSilentUntilTheClientLeaves) {
  ASSERT_TRUE(
      proxy_->AddRule({.target_contains = "/s", .action = FaultAction::StallAfterBytes(4)}));
  std::vector<UniqueFd> sockets;
  for (int i = 0; i < 2; ++i) {
    Result<UniqueFd> socket = ConnectTcp("127.0.0.1", proxy_->port());
    ASSERT_TRUE(socket);
    ASSERT_TRUE(SendAll(socket->get(), "GET /s HTTP/1.1\r\nHost: x\r\n\r\n"));
    SocketReader reader(socket->get());
    Result<std::optional<std::string>> head = reader.ReadHead();
    ASSERT_TRUE(head && head->has_value());
    Result<ResponseHead> parsed = ParseResponseHead(**head);
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->status, 200);
    EXPECT_EQ(*reader.ReadExactly(4), "0123");
    // The connection is open and nothing more comes.
    char byte;
    EXPECT_EQ(::recv(socket->get(), &byte, 1, MSG_DONTWAIT), -1);
    EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK);
    sockets.push_back(std::move(*socket));
  }
  EXPECT_EQ(proxy_->MaxConcurrentRequests("GET", "/s"), 2u);
  for (const ProxiedRequest& request : proxy_->requests()) EXPECT_EQ(request.body_bytes_sent, 4u);
  sockets.clear();  // the clients give up; the proxy notices and ends both requests
  EXPECT_EQ(Fetch("/t").status, 200);
  EXPECT_EQ(Fetch("/t").status, 200);
  EXPECT_EQ(proxy_->MaxConcurrentRequests("GET", "/t"), 1u);
  EXPECT_EQ(proxy_->MaxConcurrentRequests("GET", "/nothing"), 0u);
}

TEST(FaultProxyChunkedTest, RechunksAndCorruptsChunkedBodies) {
  auto upstream = StartChunkedUpstream();
  ASSERT_NE(upstream, nullptr);
  Result<std::unique_ptr<FaultProxy>> proxy =
      FaultProxy::Start("127.0.0.1:" + std::to_string(upstream->port()));
  ASSERT_TRUE(proxy);
  Result<HttpFetchResponse> plain = HttpFetch({.url = (*proxy)->url() + "/"});
  ASSERT_TRUE(plain) << plain.error().ToString();
  EXPECT_EQ(plain->body, "hello, chunked world");
  EXPECT_NE(plain->Header("Transfer-Encoding").value_or("").find("chunked"), std::string::npos);

  // Offsets count decoded body bytes, across chunk boundaries.
  ASSERT_TRUE((*proxy)->AddRule({.action = FaultAction::CorruptByteAt(8)}));
  Result<HttpFetchResponse> corrupted = HttpFetch({.url = (*proxy)->url() + "/"});
  ASSERT_TRUE(corrupted);
  std::string expected = "hello, chunked world";
  expected[8] = static_cast<char>(expected[8] ^ 0xff);
  EXPECT_EQ(corrupted->body, expected);
}

}  // namespace
}  // namespace berth::testing
