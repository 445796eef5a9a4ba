#include "tools/imagegen/image.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "berth/image/media_types.h"

namespace berth::imagegen {
namespace {

using nlohmann::json;

Layer TestLayer(std::string content, Compression compression) {
  FileTree tree;
  tree.AddFile("file", std::move(content));
  Result<Layer> layer = BuildLayer(tree, {.compression = compression});
  EXPECT_TRUE(layer.has_value());
  return *layer;
}

ImageConfig TestConfig() {
  return {.architecture = "arm64",
          .os = "linux",
          .variant = "v8",
          .user = "1000:1000",
          .env = {"PATH=/bin", "A=b"},
          .entrypoint = {"/bin/sh", "-c"},
          .cmd = {"echo hi"},
          .working_dir = "/work",
          .labels = {{"b", "2"}, {"a", "1"}}};
}

TEST(ConfigJsonTest, ExactBytesForAMinimalConfig) {
  Result<std::string> config = ConfigJson({.cmd = {"/bin/true"}}, {Digest::Sha256Of("layer")});
  ASSERT_TRUE(config.has_value());
  EXPECT_EQ(
      *config,
      "{\"created\":\"1970-01-01T00:00:00Z\",\"architecture\":\"amd64\",\"os\":\"linux\","
      "\"config\":{\"Cmd\":[\"/bin/true\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" +
          Digest::Sha256Of("layer").ToString() +
          "\"]},\"history\":[{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":"
          "\"berth imagegen: layer 0\"}]}");
}

TEST(ConfigJsonTest, HistoryMustMatchLayers) {
  Result<std::string> config =
      ConfigJson({.history = {{.created_by = "a"}, {.created_by = "b", .empty_layer = true}}},
                 {Digest::Sha256Of("1"), Digest::Sha256Of("2")});
  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().code(), ErrorCode::kInvalidArgument);
}

TEST(ConfigJsonTest, RejectsInvalidUtf8WithoutThrowing) {
  Result<std::string> config = ConfigJson({.labels = {{"bad", "\xff\xfe"}}}, {});
  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().code(), ErrorCode::kInvalidArgument);
}

TEST(AssembleImageTest, OciManifestAndConfigFields) {
  Layer gzip = TestLayer("one", Compression::kGzip);
  Layer zstd = TestLayer("two", Compression::kZstd);
  Layer none = TestLayer("three", Compression::kNone);
  Result<Image> image = AssembleImage(TestConfig(), {gzip, zstd, none}, ManifestFormat::kOci,
                                      {{"org.example", "yes"}});
  ASSERT_TRUE(image.has_value()) << image.error().ToString();

  EXPECT_EQ(image->manifest.digest, Digest::Sha256Of(image->manifest_json));
  EXPECT_EQ(image->manifest.size, static_cast<int64_t>(image->manifest_json.size()));
  EXPECT_EQ(image->manifest.media_type, media_types::kOciManifest);
  EXPECT_EQ(image->manifest.platform, (Platform{"arm64", "linux", "v8"}));
  EXPECT_EQ(image->config.digest, Digest::Sha256Of(image->config_json));
  EXPECT_EQ(image->config.media_type, media_types::kOciConfig);

  json manifest = json::parse(image->manifest_json);
  EXPECT_EQ(manifest["schemaVersion"], 2);
  EXPECT_EQ(manifest["mediaType"], media_types::kOciManifest);
  EXPECT_EQ(manifest["config"]["mediaType"], media_types::kOciConfig);
  EXPECT_EQ(manifest["config"]["digest"], image->config.digest.ToString());
  EXPECT_EQ(manifest["config"]["size"], image->config_json.size());
  ASSERT_EQ(manifest["layers"].size(), 3u);
  EXPECT_EQ(manifest["layers"][0]["mediaType"], media_types::kOciLayerGzip);
  EXPECT_EQ(manifest["layers"][0]["digest"], gzip.blob.digest.ToString());
  EXPECT_EQ(manifest["layers"][0]["size"], gzip.blob.size);
  EXPECT_EQ(manifest["layers"][1]["mediaType"], media_types::kOciLayerZstd);
  EXPECT_EQ(manifest["layers"][2]["mediaType"], media_types::kOciLayer);
  EXPECT_EQ(manifest["annotations"]["org.example"], "yes");

  json config = json::parse(image->config_json);
  EXPECT_EQ(config["architecture"], "arm64");
  EXPECT_EQ(config["os"], "linux");
  EXPECT_EQ(config["variant"], "v8");
  EXPECT_EQ(config["config"]["User"], "1000:1000");
  EXPECT_EQ(config["config"]["Env"], json::array({"PATH=/bin", "A=b"}));
  EXPECT_EQ(config["config"]["Entrypoint"], json::array({"/bin/sh", "-c"}));
  EXPECT_EQ(config["config"]["Cmd"], json::array({"echo hi"}));
  EXPECT_EQ(config["config"]["WorkingDir"], "/work");
  EXPECT_EQ(config["config"]["Labels"]["a"], "1");
  EXPECT_EQ(config["rootfs"]["type"], "layers");
  EXPECT_EQ(
      config["rootfs"]["diff_ids"],
      json::array({gzip.diff_id.ToString(), zstd.diff_id.ToString(), none.diff_id.ToString()}));
  EXPECT_EQ(config["history"].size(), 3u);
}

TEST(AssembleImageTest, DockerSchema2UsesDockerMediaTypes) {
  Result<Image> image =
      AssembleImage(TestConfig(),
                    {TestLayer("1", Compression::kGzip), TestLayer("2", Compression::kZstd),
                     TestLayer("3", Compression::kNone)},
                    ManifestFormat::kDocker);
  ASSERT_TRUE(image.has_value());
  EXPECT_EQ(image->manifest.media_type, media_types::kDockerManifest);
  EXPECT_EQ(image->config.media_type, media_types::kDockerConfig);
  json manifest = json::parse(image->manifest_json);
  EXPECT_EQ(manifest["mediaType"], media_types::kDockerManifest);
  EXPECT_EQ(manifest["config"]["mediaType"], media_types::kDockerConfig);
  EXPECT_EQ(manifest["layers"][0]["mediaType"], media_types::kDockerLayerGzip);
  EXPECT_EQ(manifest["layers"][1]["mediaType"], media_types::kDockerLayerZstd);
  EXPECT_EQ(manifest["layers"][2]["mediaType"], kDockerLayerUncompressed);
  EXPECT_EQ(image->layers[0].blob.media_type, media_types::kDockerLayerGzip);
  EXPECT_FALSE(manifest.contains("annotations"));

  Result<Image> annotated = AssembleImage(TestConfig(), {}, ManifestFormat::kDocker, {{"k", "v"}});
  ASSERT_FALSE(annotated.has_value());
  EXPECT_EQ(annotated.error().code(), ErrorCode::kInvalidArgument);
}

TEST(AssembleImageTest, SameInputsGiveSameDigests) {
  auto build = [](std::string content) {
    Result<Image> image =
        AssembleImage(TestConfig(), {TestLayer(std::move(content), Compression::kGzip)});
    EXPECT_TRUE(image.has_value());
    return image->manifest.digest;
  };
  EXPECT_EQ(build("same"), build("same"));
  EXPECT_NE(build("same"), build("different"));
}

TEST(AssembleIndexTest, OciIndexListsEachPlatform) {
  Result<Image> amd64 = MakeDemoImage(ManifestFormat::kOci, {"amd64", "linux", ""});
  Result<Image> arm64 = MakeDemoImage(ManifestFormat::kOci, {"arm64", "linux", "v8"});
  ASSERT_TRUE(amd64.has_value() && arm64.has_value());
  EXPECT_NE(amd64->manifest.digest, arm64->manifest.digest);
  Result<ImageIndex> index = AssembleIndex({*amd64, *arm64});
  ASSERT_TRUE(index.has_value());
  EXPECT_EQ(index->descriptor.media_type, media_types::kOciIndex);
  EXPECT_EQ(index->descriptor.digest, Digest::Sha256Of(index->json));
  json parsed = json::parse(index->json);
  EXPECT_EQ(parsed["schemaVersion"], 2);
  EXPECT_EQ(parsed["mediaType"], media_types::kOciIndex);
  ASSERT_EQ(parsed["manifests"].size(), 2u);
  EXPECT_EQ(parsed["manifests"][0]["mediaType"], media_types::kOciManifest);
  EXPECT_EQ(parsed["manifests"][0]["digest"], amd64->manifest.digest.ToString());
  EXPECT_EQ(parsed["manifests"][0]["platform"], json({{"architecture", "amd64"}, {"os", "linux"}}));
  EXPECT_EQ(parsed["manifests"][1]["platform"]["variant"], "v8");
}

TEST(AssembleIndexTest, DockerManifestList) {
  Result<Image> amd64 = MakeDemoImage(ManifestFormat::kDocker, {"amd64", "linux", ""});
  Result<Image> arm = MakeDemoImage(ManifestFormat::kDocker, {"arm", "linux", "v7"});
  ASSERT_TRUE(amd64.has_value() && arm.has_value());
  Result<ImageIndex> list = AssembleIndex({*amd64, *arm}, ManifestFormat::kDocker);
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(list->descriptor.media_type, media_types::kDockerManifestList);
  json parsed = json::parse(list->json);
  EXPECT_EQ(parsed["mediaType"], media_types::kDockerManifestList);
  EXPECT_EQ(parsed["manifests"][0]["mediaType"], media_types::kDockerManifest);
  EXPECT_EQ(parsed["manifests"][1]["platform"]["architecture"], "arm");
}

TEST(AssembleIndexTest, RejectsEmptyAndMixedFormats) {
  EXPECT_EQ(AssembleIndex({}).error().code(), ErrorCode::kInvalidArgument);
  Result<Image> docker = MakeDemoImage(ManifestFormat::kDocker);
  ASSERT_TRUE(docker.has_value());
  EXPECT_EQ(AssembleIndex({*docker}, ManifestFormat::kOci).error().code(),
            ErrorCode::kInvalidArgument);
}

TEST(ParseManifestTest, ReadsBackWhatAssemblyWrote) {
  Result<Image> image = MakeDemoImage();
  ASSERT_TRUE(image.has_value());
  Result<ParsedManifest> parsed = ParseManifest(image->manifest_json);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().ToString();
  EXPECT_FALSE(parsed->is_index());
  EXPECT_EQ(parsed->media_type, media_types::kOciManifest);
  EXPECT_EQ(*parsed->config, image->config);
  ASSERT_EQ(parsed->layers.size(), image->layers.size());
  for (size_t i = 0; i < parsed->layers.size(); ++i) {
    EXPECT_EQ(parsed->layers[i], image->layers[i].blob);
  }

  Result<ImageIndex> index = AssembleIndex({*image});
  ASSERT_TRUE(index.has_value());
  Result<ParsedManifest> parsed_index = ParseManifest(index->json);
  ASSERT_TRUE(parsed_index.has_value());
  EXPECT_TRUE(parsed_index->is_index());
  ASSERT_EQ(parsed_index->manifests.size(), 1u);
  EXPECT_EQ(parsed_index->manifests[0], image->manifest);
}

TEST(ParseManifestTest, RejectsMalformedInput) {
  EXPECT_EQ(ParseManifest("{").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseManifest("{\"schemaVersion\":1}").error().code(), ErrorCode::kUnimplemented);
  EXPECT_EQ(ParseManifest("{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:xyz\",\"size\":1},"
                          "\"layers\":[]}")
                .error()
                .code(),
            ErrorCode::kInvalidArgument);
}

TEST(MakeDemoImageTest, HasTwoLayersWithTheDemoFiles) {
  Result<Image> image = MakeDemoImage();
  ASSERT_TRUE(image.has_value());
  ASSERT_EQ(image->layers.size(), 2u);
  EXPECT_EQ(image->layers[0].compression, Compression::kGzip);
  EXPECT_EQ(image->layers[1].compression, Compression::kZstd);
  Result<std::string> tar = Decompress(Compression::kGzip, image->layers[0].bytes);
  ASSERT_TRUE(tar.has_value());
  EXPECT_NE(tar->find("ID=berth-demo"), std::string::npos);
}

}  // namespace
}  // namespace berth::imagegen
