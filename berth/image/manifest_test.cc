#include "berth/image/manifest.h"

#include <gtest/gtest.h>

#include "berth/image/media_types.h"

namespace berth::image {
namespace {

const std::string kHexA = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
const std::string kDigestA = "sha256:" + kHexA;
const std::string kDigestB = Digest::Sha256Of("b").ToString();
const std::string kDigestC = Digest::Sha256Of("c").ToString();

std::string DockerManifest(size_t layers = 2) {
  std::string out = R"({"schemaVersion":2,"mediaType":")" +
                    std::string(media_types::kDockerManifest) + R"(","config":{"mediaType":")" +
                    std::string(media_types::kDockerConfig) + R"(","digest":")" + kDigestA +
                    R"(","size":1469},"layers":[)";
  for (size_t i = 0; i < layers; ++i) {
    if (i) out += ",";
    out += R"({"mediaType":")" + std::string(media_types::kDockerLayerGzip) + R"(","digest":")" +
           kDigestB + R"(","size":)" + std::to_string(100 + i) + "}";
  }
  return out + "]}";
}

std::string Index(const std::string& entries) {
  return R"({"schemaVersion":2,"mediaType":")" + std::string(media_types::kOciIndex) +
         R"(","manifests":[)" + entries + "]}";
}

std::string Entry(const std::string& arch, const std::string& variant = "",
                  const std::string& digest = kDigestA) {
  std::string platform = R"("platform":{"architecture":")" + arch + R"(","os":"linux")";
  if (!variant.empty()) platform += R"(,"variant":")" + variant + "\"";
  return R"({"mediaType":")" + std::string(media_types::kOciManifest) + R"(","digest":")" + digest +
         R"(","size":7,)" + platform + "}}";
}

TEST(ManifestTest, ParsesDockerSchema2) {
  Result<Manifest> manifest = ParseManifest(DockerManifest());
  ASSERT_TRUE(manifest) << manifest.error().ToString();
  EXPECT_EQ(manifest->kind, ManifestKind::kDockerManifest);
  EXPECT_EQ(manifest->config.digest.ToString(), kDigestA);
  EXPECT_EQ(manifest->config.size, 1469);
  ASSERT_EQ(manifest->layers.size(), 2u);
  EXPECT_EQ(manifest->layers[1].size, 101);
  EXPECT_EQ(manifest->layers[0].media_type, media_types::kDockerLayerGzip);
}

TEST(ManifestTest, OciManifestWithoutMediaTypeAndAnnotations) {
  std::string doc =
      R"({"schemaVersion":2,"config":{"mediaType":"x","digest":")" + kDigestA +
      R"(","size":2},"layers":[],"annotations":{"org.opencontainers.image.ref.name":"v1"}})";
  Result<Manifest> manifest = ParseManifest(doc);
  ASSERT_TRUE(manifest) << manifest.error().ToString();
  EXPECT_EQ(manifest->kind, ManifestKind::kOciManifest);
  EXPECT_EQ(manifest->annotations.at("org.opencontainers.image.ref.name"), "v1");
}

TEST(ManifestTest, RejectsMalformedDocuments) {
  struct Case {
    std::string document;
    ErrorCode code;
    std::string needle;
  };
  std::string config = R"("config":{"mediaType":"x","digest":")" + kDigestA + R"(","size":2})";
  for (const Case& c : std::vector<Case>{
           {"", ErrorCode::kInvalidArgument, "not valid JSON"},
           {"[1]", ErrorCode::kInvalidArgument, "not a JSON object"},
           {"{", ErrorCode::kInvalidArgument, "not valid JSON"},
           {R"({"layers":[]})", ErrorCode::kInvalidArgument, "schemaVersion"},
           {R"({"schemaVersion":1,"layers":[]})", ErrorCode::kInvalidArgument, "schemaVersion 1"},
           {R"({"schemaVersion":2,"layers":[]})", ErrorCode::kInvalidArgument, "config"},
           {"{\"schemaVersion\":2," + config + "}", ErrorCode::kInvalidArgument, "layers"},
           {R"({"schemaVersion":2,"config":{"digest":"sha256:12","size":1},"layers":[]})",
            ErrorCode::kInvalidArgument, "64 hex"},
           {R"({"schemaVersion":2,"config":{"digest":"md5:abcd","size":1},"layers":[]})",
            ErrorCode::kUnimplemented, "md5"},
           {R"({"schemaVersion":2,"config":{"digest":")" + kDigestA + R"("},"layers":[]})",
            ErrorCode::kInvalidArgument, "size"},
           {R"({"schemaVersion":2,"config":{"digest":")" + kDigestA +
                R"(","size":-1},"layers":[]})",
            ErrorCode::kInvalidArgument, "negative"},
           {R"({"schemaVersion":2,"config":{"digest":")" + kDigestA +
                R"(","size":99999999999999999999999},"layers":[]})",
            ErrorCode::kInvalidArgument, "size"},
           {R"({"schemaVersion":2,"config":{"digest":")" + kDigestA +
                R"(","size":1.5},"layers":[]})",
            ErrorCode::kInvalidArgument, "size"},
           {"{\"schemaVersion\":2,\"mediaType\":\"" + std::string(media_types::kOciIndex) + "\"," +
                config + ",\"layers\":[]}",
            ErrorCode::kInvalidArgument, "not an image manifest"},
           {"{\"schemaVersion\":2," + config + ",\"layers\":[7]}", ErrorCode::kInvalidArgument,
            "layer 0"},
       }) {
    Result<Manifest> manifest = ParseManifest(c.document);
    ASSERT_FALSE(manifest) << c.document;
    EXPECT_EQ(manifest.error().code(), c.code) << manifest.error().ToString();
    EXPECT_NE(manifest.error().ToString().find(c.needle), std::string::npos)
        << manifest.error().ToString() << " should mention " << c.needle;
  }
}

TEST(ManifestTest, HostileSizesAreRefused) {
  Result<Manifest> too_many = ParseManifest(DockerManifest(kMaxLayers + 1));
  ASSERT_FALSE(too_many);
  EXPECT_EQ(too_many.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_TRUE(ParseManifest(DockerManifest(kMaxLayers)));

  std::string deep(100000, '[');
  Result<Manifest> nested = ParseManifest(deep);
  ASSERT_FALSE(nested);
  EXPECT_NE(nested.error().message().find("nested deeper"), std::string::npos);

  std::string huge = R"({"schemaVersion":2,"pad":")" + std::string(kMaxManifestBytes, 'x') + "\"}";
  EXPECT_EQ(ParseManifest(huge).error().code(), ErrorCode::kResourceExhausted);
}

TEST(ManifestTest, DepthCheckIgnoresBracketsInStrings) {
  std::string doc = R"({"schemaVersion":2,"config":{"digest":")" + kDigestA +
                    R"(","size":2,"annotations":{"a":")" + std::string(200, '[') +
                    R"("}},"layers":[]})";
  EXPECT_TRUE(ParseManifest(doc)) << ParseManifest(doc).error().ToString();
}

TEST(ManifestTest, DetectKind) {
  EXPECT_EQ(DetectKind(media_types::kDockerManifest, "").value(), ManifestKind::kDockerManifest);
  EXPECT_EQ(DetectKind(std::string(media_types::kOciIndex) + "; charset=utf-8", "").value(),
            ManifestKind::kOciIndex);
  EXPECT_EQ(DetectKind("application/json", DockerManifest()).value(),
            ManifestKind::kDockerManifest);
  EXPECT_EQ(DetectKind("text/plain", R"({"schemaVersion":1,"fsLayers":[]})").value(),
            ManifestKind::kDockerSchema1);
  EXPECT_EQ(DetectKind("", R"({"schemaVersion":2,"manifests":[]})").value(),
            ManifestKind::kOciIndex);
  EXPECT_EQ(DetectKind("application/json", R"({"schemaVersion":2})").error().code(),
            ErrorCode::kUnimplemented);
  EXPECT_EQ(DetectKind("application/vnd.example+json", R"({"mediaType":"x/y"})").error().code(),
            ErrorCode::kUnimplemented);
}

TEST(IndexTest, SelectsPlatform) {
  std::string doc = Index(Entry("amd64", "", kDigestA) + "," + Entry("arm64", "v8", kDigestB) +
                          "," + Entry("arm", "v6", kDigestC));
  Result<struct Index> index = ParseIndex(doc);
  ASSERT_TRUE(index) << index.error().ToString();
  ASSERT_EQ(index->manifests.size(), 3u);
  EXPECT_EQ(SelectManifest(*index, ParsePlatform("linux/amd64").value())->digest.ToString(),
            kDigestA);
  EXPECT_EQ(SelectManifest(*index, ParsePlatform("linux/arm64").value())->digest.ToString(),
            kDigestB);
  // arm/v7 can run arm/v6.
  EXPECT_EQ(SelectManifest(*index, ParsePlatform("linux/arm/v7").value())->digest.ToString(),
            kDigestC);
  Result<Descriptor> missing = SelectManifest(*index, ParsePlatform("linux/s390x").value());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message().find("linux/arm64/v8"), std::string::npos);
}

TEST(IndexTest, PrefersExactVariant) {
  std::string doc = Index(Entry("arm", "v6", kDigestA) + "," + Entry("arm", "v7", kDigestB));
  Result<struct Index> index = ParseIndex(doc);
  ASSERT_TRUE(index);
  EXPECT_EQ(SelectManifest(*index, ParsePlatform("linux/arm/v7").value())->digest.ToString(),
            kDigestB);
}

TEST(IndexTest, ArmVariantSpellingsMatch) {
  std::string doc = Index(Entry("arm64", "", kDigestA));
  Result<struct Index> index = ParseIndex(doc);
  ASSERT_TRUE(index);
  EXPECT_EQ(SelectManifest(*index, ParsePlatform("linux/arm64/v8").value())->digest.ToString(),
            kDigestA);
}

TEST(IndexTest, RejectsTooManyEntriesAndWrongType) {
  std::string entries;
  for (size_t i = 0; i <= kMaxIndexEntries; ++i) entries += (i ? "," : "") + Entry("amd64");
  EXPECT_EQ(ParseIndex(Index(entries)).error().code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(ParseIndex(DockerManifest()).error().code(), ErrorCode::kInvalidArgument);
}

TEST(ImageConfigTest, ParsesFieldsAndDiffIds) {
  std::string doc = R"({"architecture":"amd64","os":"linux","created":"2026-01-01T00:00:00Z",
    "config":{"User":"1000:1000","Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/w",
              "Labels":{"k":"v"}},
    "rootfs":{"type":"layers","diff_ids":[")" +
                    kDigestA + R"(",")" + kDigestB + R"("]}})";
  Result<ImageConfig> config = ParseImageConfig(doc);
  ASSERT_TRUE(config) << config.error().ToString();
  EXPECT_EQ(config->user, "1000:1000");
  EXPECT_EQ(config->cmd, std::vector<std::string>{"sh"});
  EXPECT_EQ(config->labels.at("k"), "v");
  ASSERT_EQ(config->diff_ids.size(), 2u);
  EXPECT_EQ(config->diff_ids[1].ToString(), kDigestB);
}

TEST(ImageConfigTest, RejectsBadRootfs) {
  EXPECT_EQ(ParseImageConfig(R"({"os":"linux"})").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(ParseImageConfig(R"({"rootfs":{"type":"tarball","diff_ids":[]}})")
                .error()
                .message()
                .find("tarball"),
            std::string::npos);
  Result<ImageConfig> bad = ParseImageConfig(R"({"rootfs":{"type":"layers","diff_ids":["x"]}})");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().ToString().find("diff_ids[0]"), std::string::npos);
}

TEST(ChainIdTest, FollowsTheOciFormula) {
  // Vectors computed independently with coreutils:
  // printf "sha256:$a sha256:$b" | sha256sum, and so on.
  std::vector<Digest> diff_ids = {Digest::Sha256Of("a"), Digest::Sha256Of("b"),
                                  Digest::Sha256Of("c")};
  std::vector<Digest> chain = ChainIds(diff_ids);
  ASSERT_EQ(chain.size(), 3u);
  EXPECT_EQ(chain[0].ToString(), kDigestA);
  EXPECT_EQ(chain[1].encoded(), "51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676");
  EXPECT_EQ(chain[2].encoded(), "2fce7f8ce91bcf0a1428b36e1024639fdbd9469eea762dba98aa749631885106");
  EXPECT_TRUE(ChainIds({}).empty());
}

}  // namespace
}  // namespace berth::image
