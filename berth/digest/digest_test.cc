#include "berth/digest/digest.h"

#include <gtest/gtest.h>

namespace berth {
namespace {

// sha256("") and sha256("abc"), from FIPS 180-2.
constexpr char kEmpty[] = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char kAbc[] = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

TEST(DigestTest, KnownVectors) {
  EXPECT_EQ(Digest::Sha256Of("").ToString(), kEmpty);
  EXPECT_EQ(Digest::Sha256Of("abc").ToString(), kAbc);
}

TEST(DigestTest, IncrementalEqualsOneShot) {
  Hasher hasher;
  hasher.Update(std::string_view("a"));
  hasher.Update(std::string_view("bc"));
  EXPECT_EQ(hasher.Finish().ToString(), kAbc);
  EXPECT_EQ(hasher.size(), 3u);
  hasher.Update(std::string_view(""));
  EXPECT_EQ(hasher.Finish().ToString(), kAbc);  // Finish does not consume the state
}

TEST(DigestTest, Sha512Vector) {
  Hasher hasher(DigestAlgorithm::kSha512);
  hasher.Update(std::string_view("abc"));
  Digest digest = hasher.Finish();
  EXPECT_EQ(digest.algorithm_name(), "sha512");
  EXPECT_EQ(digest.encoded().substr(0, 16), "ddaf35a193617aba");
  EXPECT_TRUE(Digest::Parse(digest.ToString()));
}

TEST(DigestTest, ParseRoundTrip) {
  Result<Digest> parsed = Digest::Parse(kAbc);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  EXPECT_EQ(parsed->ToString(), kAbc);
  EXPECT_EQ(*parsed, Digest::Sha256Of("abc"));
}

TEST(DigestTest, ParseRejects) {
  struct Case {
    std::string text;
    ErrorCode code;
  };
  std::string hex64(64, 'a');
  for (const Case& c : std::vector<Case>{
           {"", ErrorCode::kInvalidArgument},
           {"sha256", ErrorCode::kInvalidArgument},
           {"sha256:", ErrorCode::kInvalidArgument},
           {":" + hex64, ErrorCode::kInvalidArgument},
           {"sha256:" + hex64.substr(1), ErrorCode::kInvalidArgument},
           {"sha256:" + hex64 + "a", ErrorCode::kInvalidArgument},
           {"sha256:" + std::string(64, 'A'), ErrorCode::kInvalidArgument},
           {"sha256:" + std::string(63, 'a') + "g", ErrorCode::kInvalidArgument},
           {"SHA256:" + hex64, ErrorCode::kInvalidArgument},
           {"sha256+:" + hex64, ErrorCode::kInvalidArgument},
           {"md5:" + std::string(32, 'a'), ErrorCode::kUnimplemented},
           {"foo+bar.baz:" + hex64, ErrorCode::kUnimplemented},
           {"sha512:" + hex64, ErrorCode::kInvalidArgument},
       }) {
    Result<Digest> parsed = Digest::Parse(c.text);
    ASSERT_FALSE(parsed) << c.text;
    EXPECT_EQ(parsed.error().code(), c.code) << c.text << ": " << parsed.error().ToString();
  }
}

// A hostile digest of any length is echoed only in part: errors go into gRPC statuses and logs.
TEST(DigestTest, ParseEchoesAtMostAFewHundredBytesOfItsInput) {
  for (const std::string& text : {std::string(1 << 20, 'a'), "sha256:" + std::string(1 << 20, 'a'),
                                  std::string(1 << 20, 'x') + ":" + std::string(64, 'a'),
                                  "sha256:" + std::string(1 << 20, 'A')}) {
    Result<Digest> parsed = Digest::Parse(text);
    ASSERT_FALSE(parsed);
    EXPECT_LT(parsed.error().message().size(), 400u) << parsed.error().message().substr(0, 400);
    EXPECT_NE(parsed.error().message().find("bytes cut"), std::string::npos)
        << parsed.error().message();
  }
}

}  // namespace
}  // namespace berth
