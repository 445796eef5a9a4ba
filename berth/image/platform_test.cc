#include "berth/image/platform.h"

#include <gtest/gtest.h>

namespace berth::image {
namespace {

TEST(PlatformTest, ParseAndNormalize) {
  struct Case {
    std::string input, expected;
  };
  for (const Case& c : std::vector<Case>{
           {"linux/amd64", "linux/amd64"},
           {"linux/x86_64", "linux/amd64"},
           {"Linux/AMD64", "linux/amd64"},
           {"linux/amd64/v1", "linux/amd64"},
           {"linux/arm64", "linux/arm64/v8"},
           {"linux/aarch64", "linux/arm64/v8"},
           {"linux/arm64/8", "linux/arm64/v8"},
           {"linux/arm", "linux/arm/v7"},
           {"linux/arm/6", "linux/arm/v6"},
           {"linux/armhf", "linux/arm/v7"},
           {"linux/armel", "linux/arm/v6"},
           {"linux/i386", "linux/386"},
           {"arm64", "linux/arm64/v8"},
           {"linux/s390x", "linux/s390x"},
       }) {
    Result<Platform> parsed = ParsePlatform(c.input);
    ASSERT_TRUE(parsed) << c.input << ": " << parsed.error().ToString();
    EXPECT_EQ(parsed->ToString(), c.expected) << c.input;
  }
}

TEST(PlatformTest, ParseRejects) {
  for (std::string bad : {"", "linux/", "/amd64", "linux//v7", "a/b/c/d"}) {
    Result<Platform> parsed = ParsePlatform(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
  }
}

TEST(PlatformTest, HostIsLinux) {
  Platform host = HostPlatform();
  EXPECT_EQ(host.os, "linux");
  EXPECT_FALSE(host.architecture.empty());
#if defined(__x86_64__)
  EXPECT_EQ(host.ToString(), "linux/amd64");
#endif
}

TEST(PlatformTest, MatchRank) {
  Platform arm7 = ParsePlatform("linux/arm/v7").value();
  EXPECT_EQ(MatchRank(arm7, ParsePlatform("linux/arm/v7").value()), 0);
  EXPECT_EQ(MatchRank(arm7, ParsePlatform("linux/arm/v6").value()), 1);
  EXPECT_EQ(MatchRank(arm7, ParsePlatform("linux/arm/v5").value()), 2);
  EXPECT_FALSE(MatchRank(ParsePlatform("linux/arm/v6").value(), arm7));
  EXPECT_FALSE(MatchRank(arm7, ParsePlatform("linux/arm64").value()));
  EXPECT_FALSE(MatchRank(ParsePlatform("linux/amd64").value(),
                         Platform{.os = "windows", .architecture = "amd64"}));
}

}  // namespace
}  // namespace berth::image
