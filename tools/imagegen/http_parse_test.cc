#include "tools/imagegen/http_parse.h"

#include <gtest/gtest.h>

namespace berth::imagegen {
namespace {

TEST(ParseHttpUrlTest, SplitsEveryPart) {
  std::optional<ParsedUrl> url = ParseHttpUrl("HTTPS://registry.test:5000/v2/a/b?x=1&y=2#frag");
  ASSERT_TRUE(url);
  EXPECT_EQ(url->scheme, "https");
  EXPECT_EQ(url->host, "registry.test");
  EXPECT_EQ(url->port, "5000");
  EXPECT_EQ(url->path, "/v2/a/b");
  EXPECT_EQ(url->query, "x=1&y=2");
  EXPECT_EQ(url->ToString(), "https://registry.test:5000/v2/a/b?x=1&y=2");
}

TEST(ParseHttpUrlTest, DefaultsAndIpv6) {
  std::optional<ParsedUrl> bare = ParseHttpUrl("http://h");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->port, "");
  EXPECT_EQ(bare->path, "/");
  EXPECT_EQ(bare->query, "");
  std::optional<ParsedUrl> query_only = ParseHttpUrl("http://h?ns=docker.io");
  ASSERT_TRUE(query_only);
  EXPECT_EQ(query_only->path, "/");
  EXPECT_EQ(query_only->query, "ns=docker.io");
  std::optional<ParsedUrl> v6 = ParseHttpUrl("http://[::1]:5000/v2/");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, "5000");
  EXPECT_EQ(v6->Authority(), "[::1]:5000");
}

TEST(ParseHttpUrlTest, RefusesWhatItCannotUse) {
  EXPECT_FALSE(ParseHttpUrl("ftp://h/x"));
  EXPECT_FALSE(ParseHttpUrl("registry.test/v2"));
  EXPECT_FALSE(ParseHttpUrl("http:///v2"));
  EXPECT_FALSE(ParseHttpUrl("http://user:pass@h/v2"));
  EXPECT_FALSE(ParseHttpUrl("http://h:port/v2"));
  EXPECT_FALSE(ParseHttpUrl("http://[::1/v2"));
}

TEST(ResolveReferenceTest, AbsoluteSchemeRelativeRootedAndRelative) {
  ParsedUrl base = *ParseHttpUrl("http://h:5000/v2/r/blobs/uploads/u1?_state=a/b");
  EXPECT_EQ(ResolveReference(base, "https://o:9/x?y=1")->ToString(), "https://o:9/x?y=1");
  EXPECT_EQ(ResolveReference(base, "//cdn.test/x")->ToString(), "http://cdn.test/x");
  EXPECT_EQ(ResolveReference(base, "/v2/r/blobs/uploads/u2?_state=s")->ToString(),
            "http://h:5000/v2/r/blobs/uploads/u2?_state=s");
  EXPECT_EQ(ResolveReference(base, "u3")->ToString(), "http://h:5000/v2/r/blobs/uploads/u3");
  EXPECT_FALSE(ResolveReference(base, "ftp://x/y"));
}

TEST(PercentEncodeTest, KeepsOnlyUnreserved) {
  EXPECT_EQ(PercentEncode("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
  EXPECT_EQ(PercentEncode("Az09-._~ "), "Az09-._~%20");
}

TEST(ParseAuthChallengesTest, BearerWithRealmServiceAndScope) {
  auto challenges =
      ParseAuthChallenges(R"(Bearer realm="https://auth.test/token?a=1",service="registry.test",)"
                          R"(scope="repository:a/b:pull,push")");
  ASSERT_TRUE(challenges);
  ASSERT_EQ(challenges->size(), 1u);
  const AuthChallenge& bearer = challenges->front();
  EXPECT_EQ(bearer.scheme, "bearer");
  EXPECT_EQ(bearer.Param("realm"), "https://auth.test/token?a=1");
  EXPECT_EQ(bearer.Param("service"), "registry.test");
  EXPECT_EQ(bearer.Param("scope"), "repository:a/b:pull,push");
  EXPECT_EQ(bearer.Param("error"), "");
}

TEST(ParseAuthChallengesTest, BasicAndSeveralChallenges) {
  auto basic = ParseAuthChallenges(R"(Basic realm="Registry Realm")");
  ASSERT_TRUE(basic);
  ASSERT_EQ(basic->size(), 1u);
  EXPECT_EQ((*basic)[0].scheme, "basic");
  EXPECT_EQ((*basic)[0].Param("realm"), "Registry Realm");

  auto both = ParseAuthChallenges(
      R"(Basic realm="r" , BEARER Realm=token-realm, Service = "s\"q", Negotiate)");
  ASSERT_TRUE(both);
  ASSERT_EQ(both->size(), 3u);
  EXPECT_EQ((*both)[0].scheme, "basic");
  EXPECT_EQ((*both)[1].scheme, "bearer");
  EXPECT_EQ((*both)[1].Param("realm"), "token-realm");
  EXPECT_EQ((*both)[1].Param("service"), "s\"q");
  EXPECT_EQ((*both)[2].scheme, "negotiate");
  EXPECT_TRUE((*both)[2].params.empty());
}

TEST(ParseAuthChallengesTest, MalformedIsRefused) {
  EXPECT_FALSE(ParseAuthChallenges(""));
  EXPECT_FALSE(ParseAuthChallenges(R"(Bearer realm="unterminated)"));
  EXPECT_FALSE(ParseAuthChallenges(R"(Bearer realm="a" "b")"));
  EXPECT_FALSE(ParseAuthChallenges("=x"));
}

}  // namespace
}  // namespace berth::imagegen
