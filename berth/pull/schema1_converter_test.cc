// Unit tests of the schema1 conversion on a real content store, with a fetch function that
// copies blobs from memory (the registry end of it is covered by
// test/integration/schema1_test.cc).
#include "berth/pull/schema1_converter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "berth/image/manifest.h"
#include "berth/image/media_types.h"
#include "testing/result_matchers.h"
#include "testing/temp_dir.h"
#include "tools/imagegen/file_tree.h"
#include "tools/imagegen/layer.h"
#include "tools/imagegen/schema1.h"

namespace berth::pull {
namespace {

using ::berth::testing::FailsWith;

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

imagegen::Layer MakeLayer(const std::string& name,
                          imagegen::Compression compression = imagegen::Compression::kGzip) {
  imagegen::FileTree tree;
  tree.AddFile(name, "contents of " + name + "\n");
  Result<imagegen::Layer> layer = imagegen::BuildLayer(tree, {.compression = compression});
  EXPECT_OK(layer);
  return layer ? std::move(*layer) : imagegen::Layer{};
}

class Schema1ConverterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<testing::TempDir> dir = testing::TempDir::Create("schema1-converter");
    ASSERT_OK(dir);
    dir_ = std::make_unique<testing::TempDir>(std::move(*dir));
    Result<std::unique_ptr<content::Store>> store =
        content::Store::Open({.root = dir_->Join("content"), .durability = Durability::kNone});
    ASSERT_OK(store);
    store_ = std::move(*store);
  }

  // The "registry": blobs by digest, and how often each was fetched.
  void Serve(const imagegen::Layer& layer) { blobs_[layer.blob.digest] = layer.bytes; }

  Result<ConvertedSchema1> Convert(const std::string& document) {
    FetchBlobFn fetch = [this](const image::Descriptor& descriptor,
                               const CancelToken& cancel) -> Result<void> {
      BERTH_RETURN_IF_ERROR(cancel.Check());
      EXPECT_EQ(descriptor.size, -1);
      EXPECT_EQ(descriptor.media_type, media_types::kDockerLayerGzip);
      {
        std::lock_guard lock(mutex_);
        ++fetches_[descriptor.digest];
      }
      auto blob = blobs_.find(descriptor.digest);
      if (blob == blobs_.end()) {
        return Fail(ErrorCode::kNotFound, fmt::format("blob {} unknown", descriptor.digest));
      }
      return store_->WriteBlob(descriptor.digest, blob->second);
    };
    return ConvertSchema1(*store_, document, fetch, /*max_concurrent=*/3, CancelToken::Never());
  }

  std::string Stored(const Digest& digest) {
    Result<std::string> bytes = store_->ReadBlob(digest, image::kMaxManifestBytes);
    EXPECT_OK(bytes);
    return bytes.value_or("");
  }

  std::unique_ptr<testing::TempDir> dir_;
  std::unique_ptr<content::Store> store_;
  std::map<Digest, std::string> blobs_;
  std::mutex mutex_;
  std::map<Digest, int> fetches_;
};

std::string Unsigned(const imagegen::Schema1Spec& spec) {
  Result<std::string> manifest = imagegen::BuildSchema1Manifest(spec);
  EXPECT_OK(manifest);
  return manifest.value_or("");
}

TEST_F(Schema1ConverterTest, ConvertsIntoASchema2ImageInTheStore) {
  imagegen::Layer base = MakeLayer("base");
  imagegen::Layer app = MakeLayer("app");
  imagegen::Layer empty = MakeLayer("never fetched");
  Serve(base);
  Serve(app);
  imagegen::Schema1Spec spec{.cmd = {"/app"}};
  spec.steps = {{.blob_sum = base.blob.digest, .created_by = "ADD base /"},
                {.blob_sum = empty.blob.digest, .created_by = "ENV A=1", .throwaway = true},
                {.blob_sum = app.blob.digest, .created_by = "COPY app /"}};

  Result<ConvertedSchema1> converted = Convert(Unsigned(spec));
  ASSERT_OK(converted);

  // The throwaway step's blob is never fetched; the others once each.
  EXPECT_EQ(fetches_, (std::map<Digest, int>{{base.blob.digest, 1}, {app.blob.digest, 1}}));

  // The generated config: diffIDs of the real layers, oldest first; history of every step.
  EXPECT_EQ(converted->config.media_type, media_types::kDockerConfig);
  const std::string config = Stored(converted->config.digest);
  EXPECT_EQ(converted->config.digest, Digest::Sha256Of(config));
  EXPECT_EQ(converted->config.size, static_cast<int64_t>(config.size()));
  Result<image::ImageConfig> parsed_config = image::ParseImageConfig(config);
  ASSERT_OK(parsed_config);
  EXPECT_THAT(parsed_config->diff_ids, ElementsAre(base.diff_id, app.diff_id));
  EXPECT_THAT(parsed_config->cmd, ElementsAre("/app"));
  EXPECT_EQ(parsed_config->os, "linux");
  EXPECT_EQ(parsed_config->architecture, "amd64");
  json history = json::parse(config)["history"];
  ASSERT_EQ(history.size(), 3u);
  EXPECT_EQ(history[0]["created_by"], "/bin/sh -c ADD base /");
  EXPECT_FALSE(history[0].contains("empty_layer"));
  EXPECT_EQ(history[1]["empty_layer"], true);
  EXPECT_EQ(history[2]["created_by"], "/bin/sh -c COPY app /");

  // The generated manifest names the config and the layers, with their real sizes.
  EXPECT_EQ(converted->manifest.media_type, media_types::kDockerManifest);
  EXPECT_EQ(Stored(converted->manifest.digest), converted->manifest_bytes);
  Result<image::Manifest> manifest = image::ParseManifest(converted->manifest_bytes);
  ASSERT_OK(manifest);
  EXPECT_EQ(manifest->config, converted->config);
  ASSERT_EQ(manifest->layers.size(), 2u);
  EXPECT_EQ(manifest->layers[0].digest, base.blob.digest);
  EXPECT_EQ(manifest->layers[0].size, base.blob.size);
  EXPECT_EQ(manifest->layers[0].media_type, media_types::kDockerLayerGzip);
  EXPECT_EQ(manifest->layers[1].digest, app.blob.digest);
  EXPECT_EQ(manifest->layers[1].size, app.blob.size);

  // Converting again gives the same image ID and manifest.
  Result<ConvertedSchema1> again = Convert(Unsigned(spec));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->config.digest, converted->config.digest);
  EXPECT_EQ(again->manifest.digest, converted->manifest.digest);
}

TEST_F(Schema1ConverterTest, SignedManifestsConvertLikeUnsignedOnes) {
  imagegen::Layer base = MakeLayer("base");
  Serve(base);
  imagegen::Schema1Spec spec;
  spec.steps = {{.blob_sum = base.blob.digest, .created_by = "ADD base /"}};
  Result<imagegen::Schema1Signer> signer = imagegen::Schema1Signer::Generate();
  ASSERT_TRUE(signer);
  Result<std::string> signed_manifest = signer->Sign(Unsigned(spec));
  ASSERT_TRUE(signed_manifest);

  Result<ConvertedSchema1> from_signed = Convert(*signed_manifest);
  ASSERT_OK(from_signed);
  Result<ConvertedSchema1> from_unsigned = Convert(Unsigned(spec));
  ASSERT_TRUE(from_unsigned);
  EXPECT_EQ(from_signed->config.digest, from_unsigned->config.digest);
}

TEST_F(Schema1ConverterTest, ABlobUsedByTwoStepsIsFetchedOnceAndListedTwice) {
  imagegen::Layer layer = MakeLayer("same");
  Serve(layer);
  imagegen::Schema1Spec spec;
  spec.steps = {{.blob_sum = layer.blob.digest}, {.blob_sum = layer.blob.digest}};
  Result<ConvertedSchema1> converted = Convert(Unsigned(spec));
  ASSERT_OK(converted);
  EXPECT_EQ(fetches_[layer.blob.digest], 1);
  Result<image::Manifest> manifest = image::ParseManifest(converted->manifest_bytes);
  ASSERT_TRUE(manifest);
  EXPECT_EQ(manifest->layers.size(), 2u);
  Result<image::ImageConfig> config = image::ParseImageConfig(Stored(converted->config.digest));
  ASSERT_TRUE(config);
  EXPECT_THAT(config->diff_ids, ElementsAre(layer.diff_id, layer.diff_id));
}

TEST_F(Schema1ConverterTest, AnUncompressedLayerIsListedAsSuch) {
  imagegen::Layer plain = MakeLayer("plain", imagegen::Compression::kNone);
  Serve(plain);
  imagegen::Schema1Spec spec;
  spec.steps = {{.blob_sum = plain.blob.digest}};
  Result<ConvertedSchema1> converted = Convert(Unsigned(spec));
  ASSERT_OK(converted);
  Result<image::Manifest> manifest = image::ParseManifest(converted->manifest_bytes);
  ASSERT_TRUE(manifest);
  EXPECT_EQ(manifest->layers[0].media_type, "application/vnd.docker.image.rootfs.diff.tar");
  Result<image::ImageConfig> config = image::ParseImageConfig(Stored(converted->config.digest));
  ASSERT_TRUE(config);
  EXPECT_THAT(config->diff_ids, ElementsAre(plain.blob.digest));
}

TEST_F(Schema1ConverterTest, AFailedFetchFailsTheConversionNamingTheBlob) {
  imagegen::Layer base = MakeLayer("base");
  imagegen::Layer missing = MakeLayer("missing");
  Serve(base);
  imagegen::Schema1Spec spec;
  spec.steps = {{.blob_sum = base.blob.digest}, {.blob_sum = missing.blob.digest}};
  Result<ConvertedSchema1> converted = Convert(Unsigned(spec));
  ASSERT_FALSE(converted);
  EXPECT_EQ(converted.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(converted.error().ToString(), HasSubstr(missing.blob.digest.ToString()));
}

TEST_F(Schema1ConverterTest, ACorruptGzipLayerFails) {
  imagegen::Layer layer = MakeLayer("corrupt");
  layer.bytes.resize(layer.bytes.size() / 2);  // truncated gzip stream
  layer.blob.digest = Digest::Sha256Of(layer.bytes);
  Serve(layer);
  imagegen::Schema1Spec spec;
  spec.steps = {{.blob_sum = layer.blob.digest}};
  Result<ConvertedSchema1> converted = Convert(Unsigned(spec));
  ASSERT_FALSE(converted);
  EXPECT_THAT(converted, FailsWith(ErrorCode::kDataLoss));
  EXPECT_THAT(converted.error().ToString(), HasSubstr(layer.blob.digest.ToString()));
}

TEST_F(Schema1ConverterTest, AMalformedManifestFetchesNothing) {
  Result<ConvertedSchema1> converted = Convert(R"({"schemaVersion":1})");
  ASSERT_FALSE(converted);
  EXPECT_EQ(converted.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(fetches_.empty());
}

}  // namespace
}  // namespace berth::pull
