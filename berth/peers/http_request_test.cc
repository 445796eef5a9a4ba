#include "berth/peers/http_request.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "testing/result_matchers.h"

namespace berth::peers {
namespace {

using Kind = RangeAnswer::Kind;

TEST(ParseRequestHeadTest, ReadsTheRequestLineAndFields) {
  ASSERT_OK_AND_ASSIGN(RequestHead head,
                       ParseRequestHead("GET /v2/a/blobs/sha256:x?ns=docker.io HTTP/1.1\r\n"
                                        "Host: node:5050\r\nRange:  bytes=0-9 \r\nX-Empty:"));
  EXPECT_EQ(head.method, "GET");
  EXPECT_EQ(head.target, "/v2/a/blobs/sha256:x?ns=docker.io");
  EXPECT_EQ(head.Path(), "/v2/a/blobs/sha256:x");
  EXPECT_EQ(head.minor_version, 1);
  EXPECT_EQ(head.Field("range"), "bytes=0-9");
  EXPECT_EQ(head.Field("X-Empty"), "");
  EXPECT_EQ(head.Field("Accept"), std::nullopt);
  EXPECT_TRUE(head.KeepAlive());
  EXPECT_FALSE(head.HasBody());
}

TEST(ParseRequestHeadTest, ConnectionAndBody) {
  ASSERT_OK_AND_ASSIGN(RequestHead close,
                       ParseRequestHead("GET / HTTP/1.1\r\nConnection: TE, Close"));
  EXPECT_FALSE(close.KeepAlive());
  ASSERT_OK_AND_ASSIGN(RequestHead old, ParseRequestHead("HEAD / HTTP/1.0"));
  EXPECT_FALSE(old.KeepAlive());
  ASSERT_OK_AND_ASSIGN(RequestHead upload,
                       ParseRequestHead("PUT /x HTTP/1.1\r\nContent-Length: 12"));
  EXPECT_TRUE(upload.HasBody());
  ASSERT_OK_AND_ASSIGN(RequestHead chunked,
                       ParseRequestHead("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked"));
  EXPECT_TRUE(chunked.HasBody());
}

TEST(ParseRequestHeadTest, QueryParametersArePercentDecoded) {
  ASSERT_OK_AND_ASSIGN(
      RequestHead request,
      ParseRequestHead("GET /v2/a/blobs/sha256:1?key=abc&ns=127.0.0.1%3a5000&empty= HTTP/1.1"));
  EXPECT_EQ(request.Path(), "/v2/a/blobs/sha256:1");
  EXPECT_EQ(request.QueryParameter("ns"), "127.0.0.1:5000");
  EXPECT_EQ(request.QueryParameter("key"), "abc");
  EXPECT_EQ(request.QueryParameter("empty"), "");
  EXPECT_EQ(request.QueryParameter("n"), std::nullopt);
  ASSERT_OK_AND_ASSIGN(RequestHead bad, ParseRequestHead("GET /x?ns=a%3 HTTP/1.1"));
  EXPECT_EQ(bad.QueryParameter("ns"), std::nullopt) << "a truncated escape";
  ASSERT_OK_AND_ASSIGN(RequestHead none, ParseRequestHead("GET /x HTTP/1.1"));
  EXPECT_EQ(none.QueryParameter("ns"), std::nullopt);
}

TEST(ParseRequestHeadTest, RefusesMalformedHeads) {
  for (std::string_view bad : {
           "GET /",                                     // no version
           "GET / HTTP/2.0",                            // not HTTP/1.x
           "GET  / HTTP/1.1",                           // empty target
           "G(T / HTTP/1.1",                            // not a token
           "GET /a\x01 HTTP/1.1",                       // control character in the target
           "GET / HTTP/1.1\r\nNo colon",                // field without a colon
           "GET / HTTP/1.1\r\nName : value",            // space before the colon
           "GET / HTTP/1.1\r\nA: b\r\n folded",         // obsolete folding
           "GET / HTTP/1.1\r\nA: b\nB: c",              // bare LF
           "GET / HTTP/1.1\r\nA: b\x7f",                // DEL in a value
           "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03",  // a TLS ClientHello
       }) {
    Result<RequestHead> head = ParseRequestHead(bad);
    EXPECT_FALSE(head) << bad;
    if (!head) {
      EXPECT_EQ(head.error().code(), ErrorCode::kInvalidArgument);
    }
  }
}

TEST(ResolveRangeTest, SatisfiableRanges) {
  auto partial = [](int64_t first, int64_t last) {
    return ::testing::AllOf(::testing::Field(&RangeAnswer::kind, Kind::kPartial),
                            ::testing::Field(&RangeAnswer::first, first),
                            ::testing::Field(&RangeAnswer::last, last));
  };
  EXPECT_THAT(ResolveRange("bytes=0-9", 100), partial(0, 9));
  EXPECT_THAT(ResolveRange("bytes=90-", 100), partial(90, 99));
  EXPECT_THAT(ResolveRange("bytes=90-1000", 100), partial(90, 99));
  EXPECT_THAT(ResolveRange("bytes=-10", 100), partial(90, 99));
  EXPECT_THAT(ResolveRange("bytes=-1000", 100), partial(0, 99));
  EXPECT_THAT(ResolveRange("bytes=99-99", 100), partial(99, 99));
}

TEST(ResolveRangeTest, UnsatisfiableRanges) {
  for (std::string_view range : {"bytes=100-", "bytes=100-200", "bytes=-0"}) {
    EXPECT_EQ(ResolveRange(range, 100).kind, Kind::kUnsatisfiable) << range;
  }
  EXPECT_EQ(ResolveRange("bytes=0-", 0).kind, Kind::kUnsatisfiable);
  EXPECT_EQ(ResolveRange("bytes=-5", 0).kind, Kind::kUnsatisfiable);
}

TEST(ResolveRangeTest, IgnoredRangesServeTheWholeBlob) {
  EXPECT_EQ(ResolveRange(std::nullopt, 100).kind, Kind::kWhole);
  for (std::string_view range : {"bytes=0-1,5-9", "items=0-9", "bytes=9-0", "bytes=-", "bytes=a-b",
                                 "bytes=0-9x", "bytes=--1", "bytes 0-9"}) {
    EXPECT_EQ(ResolveRange(range, 100).kind, Kind::kWhole) << range;
  }
}

}  // namespace
}  // namespace berth::peers
