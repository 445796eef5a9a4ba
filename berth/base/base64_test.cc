#include "berth/base/base64.h"

#include <gtest/gtest.h>

namespace berth {
namespace {

// RFC 4648 §10 test vectors.
TEST(Base64Test, Rfc4648Vectors) {
  std::vector<std::pair<std::string, std::string>> vectors = {{"", ""},
                                                              {"f", "Zg=="},
                                                              {"fo", "Zm8="},
                                                              {"foo", "Zm9v"},
                                                              {"foob", "Zm9vYg=="},
                                                              {"fooba", "Zm9vYmE="},
                                                              {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(Base64Encode(plain), encoded);
    EXPECT_EQ(Base64Decode(encoded).value(), plain);
  }
}

TEST(Base64Test, UrlAlphabetWithoutPadding) {
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
  EXPECT_EQ(Base64UrlEncode("f"), "Zg");
}

TEST(Base64Test, StrictDecoding) {
  for (std::string bad : {"Zg", "Zg=", "Z===", "Zm9v!A==", "Zg==Zg==", " Zg=", "Zm=v"}) {
    Result<std::string> decoded = Base64Decode(bad);
    EXPECT_FALSE(decoded) << bad;
    if (!decoded) {
      EXPECT_EQ(decoded.error().code(), ErrorCode::kInvalidArgument);
    }
  }
}

TEST(Base64Test, UrlDecoding) {
  EXPECT_EQ(Base64UrlDecode("-_8").value(), "\xfb\xff");
  EXPECT_EQ(Base64UrlDecode("Zg").value(), "f");
  EXPECT_EQ(Base64UrlDecode("Zg==").value(), "f");
  EXPECT_FALSE(Base64UrlDecode("Z"));
  EXPECT_FALSE(Base64UrlDecode("+/8"));
}

TEST(Base64Test, BinaryRoundTrip) {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
  EXPECT_EQ(Base64Decode(Base64Encode(bytes)).value(), bytes);
}

}  // namespace
}  // namespace berth
