// Hostile documents through the public decoders: image manifests, indexes and configs
// (berth/image), digests, token responses and challenges (berth/registry), and the config file
// loader (berth/config). Each case asserts the error class: the code and a key phrase.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "berth/config/config.h"
#include "berth/digest/digest.h"
#include "berth/image/manifest.h"
#include "berth/image/media_types.h"
#include "berth/reference/reference.h"
#include "berth/registry/auth.h"
#include "berth/registry/challenge.h"
#include "test/hostile/hostile_util.h"
#include "testing/temp_dir.h"

namespace berth::hostile {
namespace {

const std::string kDigest = Digest::Sha256Of("layer").ToString();

std::string Descriptor(std::string_view media_type, std::string_view digest, std::string size) {
  return fmt::format(R"({{"mediaType":"{}","digest":"{}","size":{}}})", media_type, digest, size);
}

// An OCI manifest with `layers` layer descriptors (all naming the same blob).
std::string ManifestWithLayers(size_t layers) {
  std::string out = R"({"schemaVersion":2,"mediaType":")" + std::string(media_types::kOciManifest) +
                    R"(","config":)" + Descriptor(media_types::kOciConfig, kDigest, "2") +
                    R"(,"layers":[)";
  const std::string layer = Descriptor(media_types::kOciLayerGzip, kDigest, "100");
  out.reserve(out.size() + layers * (layer.size() + 1) + 2);
  for (size_t i = 0; i < layers; ++i) {
    if (i != 0) out += ',';
    out += layer;
  }
  return out + "]}";
}

std::string ManifestWithConfigSize(std::string size_text) {
  return R"({"schemaVersion":2,"config":)" +
         Descriptor(media_types::kOciConfig, kDigest, std::move(size_text)) + R"(,"layers":[]})";
}

TEST(DocumentHostileTest, ManifestWithOneHundredThousandLayersIsRefused) {
  std::string document = ManifestWithLayers(100'000);
  ASSERT_GT(document.size(), image::kMaxManifestBytes);  // refused by size before parsing
  EXPECT_TRUE(FailsWith(image::ParseManifest(document), ErrorCode::kResourceExhausted, "limit"));
  // The same count in a document under the byte limit (compact descriptors are impossible,
  // so check the layer limit right above it): refused by count.
  EXPECT_TRUE(FailsWith(image::ParseManifest(ManifestWithLayers(image::kMaxLayers + 1)),
                        ErrorCode::kResourceExhausted, "layers"));
  EXPECT_TRUE(image::ParseManifest(ManifestWithLayers(image::kMaxLayers)));
}

TEST(DocumentHostileTest, DeeplyNestedJsonIsRefusedBeforeDecoding) {
  const std::string deep_array(1'000'000, '[');
  EXPECT_TRUE(
      FailsWith(image::ParseManifest(deep_array), ErrorCode::kInvalidArgument, "nested deeper"));
  std::string nested = R"({"schemaVersion":2,"a":)";
  for (int i = 0; i < 1000; ++i) nested += R"({"a":)";
  nested += "1";
  nested += std::string(1000, '}');
  nested += "}";
  EXPECT_TRUE(
      FailsWith(image::ParseManifest(nested), ErrorCode::kInvalidArgument, "nested deeper"));
  EXPECT_TRUE(FailsWith(image::ParseIndex(nested), ErrorCode::kInvalidArgument, "nested deeper"));
  EXPECT_TRUE(
      FailsWith(image::ParseImageConfig(nested), ErrorCode::kInvalidArgument, "nested deeper"));
  // A token response: parsed without recursion and bounded by its byte limit.
  std::string deep_token = R"({"token":"t","x":)" + std::string(500'000, '[') + "}";
  EXPECT_TRUE(FailsWith(registry::ParseTokenResponse(deep_token), ErrorCode::kInvalidArgument,
                        "not a JSON object"));
}

TEST(DocumentHostileTest, JsonNumberOverflowIsInvalidArgument) {
  for (std::string size :
       {"99999999999999999999999", "18446744073709551616", "-1", "9223372036854775808", "1.5"}) {
    EXPECT_TRUE(FailsWith(image::ParseManifest(ManifestWithConfigSize(size)),
                          ErrorCode::kInvalidArgument, "size"))
        << size;
  }
  // A number beyond double's range is refused by the decoder, and the error names it.
  EXPECT_TRUE(FailsWith(image::ParseManifest(ManifestWithConfigSize("1e400")),
                        ErrorCode::kInvalidArgument,
                        "not valid JSON (number overflow parsing '1e400')"));
  EXPECT_TRUE(image::ParseManifest(ManifestWithConfigSize("9223372036854775807")));
  EXPECT_TRUE(FailsWith(registry::ParseTokenResponse(R"({"token":"t","expires_in":1e400})"),
                        ErrorCode::kInvalidArgument, "token response"));
  EXPECT_TRUE(FailsWith(registry::ParseTokenResponse(R"({"token":"t","expires_in":1e300})"),
                        ErrorCode::kInvalidArgument, "expires_in is not an integer"));
  // An integer beyond int64 is clamped, never trusted as a lifetime.
  Result<registry::Token> huge =
      registry::ParseTokenResponse(R"({"token":"t","expires_in":18446744073709551615})");
  ASSERT_TRUE(huge) << huge.error().ToString();
  EXPECT_GE(huge->expires_in.count(), 1);
  EXPECT_LE(huge->expires_in.count(), 86400);
}

TEST(DocumentHostileTest, DigestWithAnUnknownAlgorithmIsUnimplemented) {
  const std::string md5 = "md5:d41d8cd98f00b204e9800998ecf8427e";
  EXPECT_TRUE(FailsWith(Digest::Parse(md5), ErrorCode::kUnimplemented,
                        "unsupported digest algorithm \"md5\""));
  EXPECT_TRUE(FailsWith(Digest::Parse("blake3:" + std::string(64, 'a')), ErrorCode::kUnimplemented,
                        "unsupported digest algorithm"));
  std::string manifest = R"({"schemaVersion":2,"config":)" +
                         Descriptor(media_types::kOciConfig, md5, "2") + R"(,"layers":[]})";
  EXPECT_TRUE(FailsWith(image::ParseManifest(manifest), ErrorCode::kUnimplemented, "md5"));
  EXPECT_TRUE(FailsWith(Reference::Parse("example.com/a@md5:" + std::string(32, 'a')),
                        ErrorCode::kInvalidArgument, "unsupported digest algorithm"));
}

TEST(DocumentHostileTest, WwwAuthenticateOfOneMegabyteIsRefused) {
  std::string header =
      R"(Bearer realm="https://auth.example/token",service=")" + std::string(1 << 20, 's') + "\"";
  EXPECT_TRUE(FailsWith(registry::ParseChallenges(header), ErrorCode::kInvalidArgument,
                        "over the 16384 byte limit"));
}

TEST(DocumentHostileTest, TokenResponseOverTheLimitIsResourceExhausted) {
  std::string body = R"({"token":")" + std::string(registry::kMaxTokenResponseBytes, 't') + "\"}";
  EXPECT_TRUE(FailsWith(registry::ParseTokenResponse(body), ErrorCode::kResourceExhausted,
                        "over the 1048576 byte limit"));
}

TEST(DocumentHostileTest, ConfigWithADuplicateKeyNamesFileAndLine) {
  Result<testing::TempDir> dir = testing::TempDir::Create("hostile-config");
  ASSERT_TRUE(dir) << dir.error().ToString();
  const std::filesystem::path file = dir->Join("config.toml");
  std::ofstream(file) << "root = \"/var/lib/berth\"\n[pull]\nsync = \"none\"\nsync = \"file\"\n";
  Result<config::Config> loaded = config::LoadConfigFile(file);
  EXPECT_TRUE(FailsWith(loaded, ErrorCode::kInvalidArgument, file.string() + ":4:"));
  EXPECT_TRUE(FailsWith(loaded, ErrorCode::kInvalidArgument, "sync"));
  // A duplicate table, and a duplicate credential whose value must not be echoed.
  EXPECT_TRUE(FailsWith(config::ParseConfig("[pull]\n[pull]\n", "cfg.toml"),
                        ErrorCode::kInvalidArgument, "cfg.toml:2:"));
  Result<config::Config> password = config::ParseConfig(
      "[registry.configs.\"r\".auth]\npassword = \"berth-sentinel-SECRET-dup\"\n"
      "password = \"berth-sentinel-SECRET-dup\"\n",
      "cfg.toml");
  EXPECT_TRUE(FailsWith(password, ErrorCode::kInvalidArgument, "cfg.toml:3:"));
  EXPECT_EQ(password.error().ToString().find("berth-sentinel-SECRET"), std::string::npos)
      << password.error().ToString();
}

}  // namespace
}  // namespace berth::hostile
