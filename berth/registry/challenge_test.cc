#include "berth/registry/challenge.h"

#include <gtest/gtest.h>

namespace berth::registry {
namespace {

TEST(ChallengeTest, DockerHubBearer) {
  auto parsed = ParseChallenges(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull")");
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  ASSERT_EQ(parsed->size(), 1u);
  const Challenge& c = (*parsed)[0];
  EXPECT_EQ(c.scheme, "bearer");
  EXPECT_EQ(c.Param("realm"), "https://auth.docker.io/token");
  EXPECT_EQ(c.Param("service"), "registry.docker.io");
  EXPECT_EQ(c.Param("scope"), "repository:library/busybox:pull");
  EXPECT_EQ(c.Param("error"), "");
}

TEST(ChallengeTest, DescribeNamesSchemeAndRealm) {
  auto parsed = ParseChallenges(
      R"(Basic realm="Registry Realm", Bearer realm="https://a.test/t",service="s",scope="x")");
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[0].Describe(), R"(Basic realm="Registry Realm")");
  EXPECT_EQ((*parsed)[1].Describe(), R"(Bearer realm="https://a.test/t" service="s")");
}

TEST(ChallengeTest, BasicAndMultipleChallenges) {
  auto parsed = ParseChallenges(
      R"(Basic realm="Registry Realm", Bearer realm="http://a/t",error=invalid_token)");
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[0].scheme, "basic");
  EXPECT_EQ((*parsed)[0].Param("realm"), "Registry Realm");
  EXPECT_EQ((*parsed)[1].scheme, "bearer");
  EXPECT_EQ((*parsed)[1].Param("error"), "invalid_token");
}

TEST(ChallengeTest, QuotingAndCase) {
  auto parsed = ParseChallenges(R"(BEARER Realm = "a \"quoted\" realm, with comma" , Service=svc)");
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  ASSERT_EQ(parsed->size(), 1u);
  EXPECT_EQ((*parsed)[0].scheme, "bearer");
  EXPECT_EQ((*parsed)[0].Param("realm"), "a \"quoted\" realm, with comma");
  EXPECT_EQ((*parsed)[0].Param("service"), "svc");
}

TEST(ChallengeTest, SchemeWithoutParams) {
  auto parsed = ParseChallenges("Negotiate, Basic realm=x");
  ASSERT_TRUE(parsed);
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[0].scheme, "negotiate");
  EXPECT_EQ((*parsed)[1].Param("realm"), "x");
}

TEST(ChallengeTest, RejectsMalformedAndHuge) {
  EXPECT_FALSE(ParseChallenges(R"(Bearer realm="unterminated)"));
  EXPECT_FALSE(ParseChallenges(R"(Bearer realm="a" junk="b" )"));
  EXPECT_FALSE(ParseChallenges("=oops"));
  std::string huge = "Bearer realm=\"" + std::string(1 << 20, 'a') + "\"";
  auto parsed = ParseChallenges(huge);
  ASSERT_FALSE(parsed);
  EXPECT_NE(parsed.error().message().find("limit"), std::string::npos);
  EXPECT_TRUE(ParseChallenges("")->empty());
}

}  // namespace
}  // namespace berth::registry
