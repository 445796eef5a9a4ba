#include "berth/metrics/http_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "testing/http_fetch.h"
#include "testing/net_util.h"
#include "testing/result_matchers.h"

namespace berth::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class MetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.AddCounter("berth_test_total", "A test counter.").WithLabels({}).Increment(7);
    ASSERT_OK_AND_ASSIGN(
        server_, MetricsServer::Start(registry_, {.address = "127.0.0.1:0", .timeout = timeout_}));
    ASSERT_NE(server_->port(), 0);
  }

  std::string Url(std::string_view path) const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + std::string(path);
  }

  // Sends `request` as is and returns everything the server answers until it closes.
  std::string Raw(std::string_view request) const {
    Result<UniqueFd> connection = testing::ConnectTcp("127.0.0.1", server_->port());
    if (!connection) return "connect failed: " + connection.error().ToString();
    if (!request.empty()) {
      ::send(connection->get(), request.data(), request.size(), MSG_NOSIGNAL);
    }
    std::string answer;
    char buffer[4096];
    ssize_t got;
    while ((got = ::recv(connection->get(), buffer, sizeof(buffer), 0)) > 0) {
      answer.append(buffer, static_cast<size_t>(got));
    }
    return answer;
  }

  std::chrono::milliseconds timeout_{std::chrono::seconds(2)};
  Registry registry_;
  std::unique_ptr<MetricsServer> server_;
};

TEST_F(MetricsServerTest, GetMetricsAnswersTheExposition) {
  ASSERT_OK_AND_ASSIGN(testing::HttpFetchResponse response,
                       testing::HttpFetch({.url = Url("/v1/metrics")}));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(testing::FindHeader(response.headers, "content-type"),
            "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(response.body, registry_.Render());
  EXPECT_THAT(response.body, HasSubstr("berth_test_total 7\n"));
  // A query string is ignored.
  ASSERT_OK_AND_ASSIGN(response, testing::HttpFetch({.url = Url("/v1/metrics?x=1")}));
  EXPECT_EQ(response.status, 200);
}

TEST_F(MetricsServerTest, HeadHasHeadersOnly) {
  const std::string answer = Raw("HEAD /v1/metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(answer, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_EQ(answer.substr(answer.find("\r\n\r\n") + 4), "");
}

TEST_F(MetricsServerTest, OtherPathsAre404AndOtherMethods405) {
  ASSERT_OK_AND_ASSIGN(testing::HttpFetchResponse response,
                       testing::HttpFetch({.url = Url("/metrics")}));
  EXPECT_EQ(response.status, 404);
  EXPECT_THAT(response.body, HasSubstr("/v1/metrics"));
  ASSERT_OK_AND_ASSIGN(
      response, testing::HttpFetch({.method = "POST", .url = Url("/v1/metrics"), .body = "x"}));
  EXPECT_EQ(response.status, 405);
  EXPECT_EQ(testing::FindHeader(response.headers, "allow"), "GET, HEAD");
}

TEST_F(MetricsServerTest, MalformedAndOversizedRequestsAreRefused) {
  EXPECT_THAT(Raw("nonsense\r\n\r\n"), StartsWith("HTTP/1.1 400 "));
  EXPECT_THAT(Raw("GET /v1/metrics SPDY/9\r\n\r\n"), StartsWith("HTTP/1.1 400 "));
  const std::string huge =
      "GET /v1/metrics HTTP/1.1\r\nX-Fill: " + std::string(MetricsServer::kMaxRequestBytes, 'a') +
      "\r\n\r\n";
  EXPECT_THAT(Raw(huge), StartsWith("HTTP/1.1 431 "));
}

TEST_F(MetricsServerTest, SilentClientIsDroppedAfterTheTimeoutAndOthersAreStillServed) {
  const auto started = std::chrono::steady_clock::now();
  std::thread silent([&] { EXPECT_EQ(Raw(""), ""); });  // sends nothing
  // Served meanwhile: one silent connection holds one slot only.
  ASSERT_OK_AND_ASSIGN(testing::HttpFetchResponse response,
                       testing::HttpFetch({.url = Url("/v1/metrics")}));
  EXPECT_EQ(response.status, 200);
  silent.join();
  const auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_GE(waited, timeout_ - std::chrono::milliseconds(100));
  EXPECT_LT(waited, timeout_ + std::chrono::seconds(3));
}

TEST_F(MetricsServerTest, ConnectionsPastTheLimitAre503) {
  std::vector<UniqueFd> held;
  for (int i = 0; i < MetricsServer::kMaxConnections; ++i) {
    ASSERT_OK_AND_ASSIGN(UniqueFd connection, testing::ConnectTcp("127.0.0.1", server_->port()));
    held.push_back(std::move(connection));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // all accepted
  EXPECT_THAT(Raw("GET /v1/metrics HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 503 "));
  held.clear();
}

TEST_F(MetricsServerTest, StopEndsHeldConnectionsPromptly) {
  ASSERT_OK_AND_ASSIGN(UniqueFd connection, testing::ConnectTcp("127.0.0.1", server_->port()));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto started = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(1));
  EXPECT_FALSE(testing::ConnectTcp("127.0.0.1", server_->port(), std::chrono::seconds(1)));
}

TEST(ParseHostPortTest, Forms) {
  using Pair = std::pair<std::string, uint16_t>;
  EXPECT_THAT(ParseHostPort("127.0.0.1:1338"), ::testing::Optional(Pair("127.0.0.1", 1338)));
  EXPECT_THAT(ParseHostPort("[::1]:9"), ::testing::Optional(Pair("::1", 9)));
  EXPECT_THAT(ParseHostPort(":1338"), ::testing::Optional(Pair("", 1338)));
  EXPECT_THAT(ParseHostPort("localhost:0"), ::testing::Optional(Pair("localhost", 0)));
  for (std::string_view bad : {"127.0.0.1", "host:", "host:65536", "host:x1", "::1:5", "[::1]5"}) {
    EXPECT_FALSE(ParseHostPort(bad)) << bad;
  }
}

TEST(MetricsServerStartTest, UnusableAddressesFailNamingThem) {
  Registry registry;
  Result<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start(registry, {.address = "127.0.0.1"});
  ASSERT_FALSE(server);
  EXPECT_EQ(server.error().code(), ErrorCode::kInvalidArgument);
  ASSERT_OK_AND_ASSIGN(auto first, MetricsServer::Start(registry, {.address = "127.0.0.1:0"}));
  server =
      MetricsServer::Start(registry, {.address = "127.0.0.1:" + std::to_string(first->port())});
  ASSERT_FALSE(server);
  EXPECT_THAT(server.error().ToString(), HasSubstr("127.0.0.1:" + std::to_string(first->port())));
}

}  // namespace
}  // namespace berth::metrics
