#include "testing/http_wire.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include "berth/base/unique_fd.h"

namespace berth::testing {
namespace {

// A connected socket pair: write on `writer`, read with a SocketReader on `reader`.
struct SocketPair {
  SocketPair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    reader.reset(fds[0]);
    writer.reset(fds[1]);
  }
  UniqueFd reader;
  UniqueFd writer;
};

TEST(HttpWireTest, ParsesRequestHead) {
  Result<RequestHead> head = ParseRequestHead(
      "GET /v2/foo?x=1 HTTP/1.1\r\nHost: example\r\nX-Spaced:   padded value  \r\n");
  ASSERT_TRUE(head) << head.error().ToString();
  EXPECT_EQ(head->method, "GET");
  EXPECT_EQ(head->target, "/v2/foo?x=1");
  EXPECT_EQ(head->version, "HTTP/1.1");
  EXPECT_EQ(FindHeader(head->headers, "host"), "example");
  EXPECT_EQ(FindHeader(head->headers, "X-SPACED"), "padded value");
  EXPECT_FALSE(ParseRequestHead("GARBAGE"));
  EXPECT_FALSE(ParseRequestHead("GET / SPDY/3"));
}

TEST(HttpWireTest, ParsesResponseHead) {
  Result<ResponseHead> head =
      ParseResponseHead("HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\nConnection: close");
  ASSERT_TRUE(head) << head.error().ToString();
  EXPECT_EQ(head->status, 404);
  EXPECT_EQ(head->reason, "Not Found");
  EXPECT_EQ(*ContentLength(head->headers), std::optional<uint64_t>(12));
  EXPECT_TRUE(HasHeaderToken(head->headers, "connection", "Close"));
  EXPECT_FALSE(HasHeaderToken(head->headers, "Connection", "keep-alive"));
  EXPECT_FALSE(ParseResponseHead("HTTP/1.1 abc"));
}

TEST(HttpWireTest, SerializesRoundTrip) {
  ResponseHead head{.status = 503, .headers = {{"Retry-After", "3"}}};
  std::string text = SerializeResponseHead(head);
  EXPECT_EQ(text, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\n\r\n");
  Result<ResponseHead> parsed = ParseResponseHead(text.substr(0, text.size() - 4));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->status, 503);
  EXPECT_EQ(FindHeader(parsed->headers, "retry-after"), "3");
}

TEST(HttpWireTest, RemoveHeaderIsCaseInsensitive) {
  HeaderList headers = {{"Connection", "close"}, {"connection", "x"}, {"Host", "h"}};
  RemoveHeader(headers, "CONNECTION");
  ASSERT_EQ(headers.size(), 1u);
  EXPECT_EQ(headers[0].first, "Host");
}

TEST(HttpWireTest, ContentLengthRejectsGarbage) {
  EXPECT_FALSE(ContentLength({{"Content-Length", "12x"}}));
  EXPECT_EQ(*ContentLength({}), std::nullopt);
}

TEST(HttpWireTest, ReaderSplitsHeadsAndBodies) {
  SocketPair pair;
  ASSERT_TRUE(
      SendAll(pair.writer.get(), "GET / HTTP/1.1\r\nA: b\r\n\r\nbodyGET /2 HTTP/1.1\r\n\r\n"));
  pair.writer.reset();
  SocketReader reader(pair.reader.get());
  Result<std::optional<std::string>> first = reader.ReadHead();
  ASSERT_TRUE(first && first->has_value());
  EXPECT_EQ(**first, "GET / HTTP/1.1\r\nA: b");
  EXPECT_EQ(*reader.ReadExactly(4), "body");
  Result<std::optional<std::string>> second = reader.ReadHead();
  ASSERT_TRUE(second && second->has_value());
  EXPECT_EQ(**second, "GET /2 HTTP/1.1");
  // Clean end of stream between messages.
  Result<std::optional<std::string>> end = reader.ReadHead();
  ASSERT_TRUE(end);
  EXPECT_FALSE(end->has_value());
}

TEST(HttpWireTest, ReaderReportsTruncation) {
  SocketPair pair;
  ASSERT_TRUE(SendAll(pair.writer.get(), "abc"));
  pair.writer.reset();
  SocketReader reader(pair.reader.get());
  Result<std::string> data = reader.ReadExactly(10);
  ASSERT_FALSE(data);
  EXPECT_EQ(data.error().code(), ErrorCode::kUnavailable);
}

TEST(HttpWireTest, DecodesChunkedBody) {
  SocketPair pair;
  ASSERT_TRUE(SendAll(pair.writer.get(),
                      "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT"));
  SocketReader reader(pair.reader.get());
  std::string body;
  Result<void> read = ReadChunkedBody(
      reader,
      [&](std::string_view piece) -> Result<void> {
        body.append(piece);
        return Ok();
      },
      /*max_piece=*/3);
  ASSERT_TRUE(read) << read.error().ToString();
  EXPECT_EQ(body, "hello, world");
  EXPECT_EQ(*reader.ReadExactly(4), "NEXT");
}

TEST(HttpWireTest, RejectsBadChunkSize) {
  SocketPair pair;
  ASSERT_TRUE(SendAll(pair.writer.get(), "zz\r\n"));
  SocketReader reader(pair.reader.get());
  Result<void> read = ReadChunkedBody(reader, [](std::string_view) { return Ok(); });
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code(), ErrorCode::kInvalidArgument);
}

TEST(HttpWireTest, UrlCodingAndQueries) {
  EXPECT_EQ(UrlEncode("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
  EXPECT_EQ(UrlDecode("repository%3Aa%2Fb%3Apull%2Cpush"), "repository:a/b:pull,push");
  EXPECT_EQ(UrlDecode("a+b%2"), "a b%2");
  EXPECT_EQ(UrlDecode("a+b", /*plus_as_space=*/false), "a+b");
  auto query = ParseQueryString("scope=a%3Ab&service=reg&scope=c&flag&=x");
  ASSERT_EQ(query.size(), 5u);
  EXPECT_EQ(query[0], std::make_pair(std::string("scope"), std::string("a:b")));
  EXPECT_EQ(query[2], std::make_pair(std::string("scope"), std::string("c")));
  EXPECT_EQ(query[3], std::make_pair(std::string("flag"), std::string("")));
}

}  // namespace
}  // namespace berth::testing
