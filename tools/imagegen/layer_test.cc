#include "tools/imagegen/layer.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "berth/base/file_util.h"
#include "testing/result_matchers.h"
#include "testing/temp_dir.h"
#include "tools/imagegen/tar_reader_for_test.h"

namespace berth::imagegen {
namespace {

using ::berth::testing::TempDir;

FileTree SampleTree() {
  FileTree tree;
  tree.AddDirectory("etc")
      .AddFile("etc/os-release", "ID=berth\n")
      .AddFile("usr/bin/tool", std::string(200'000, 'z') + "tail", {.mode = 0755})
      .AddSymlink("usr/bin/alias", "tool");
  return tree;
}

std::string RawTar(const FileTree& tree) {
  std::string bytes;
  StringSink sink(&bytes);
  TarWriter tar(sink);
  EXPECT_TRUE(tree.WriteTo(tar).has_value());
  EXPECT_TRUE(tar.Finish().has_value());
  return bytes;
}

class LayerCompressionTest : public ::testing::TestWithParam<Compression> {};

TEST_P(LayerCompressionTest, DigestsDescribeTheBlobAndTheTar) {
  FileTree tree = SampleTree();
  Result<Layer> layer = BuildLayer(tree, {.compression = GetParam()});
  ASSERT_TRUE(layer.has_value()) << layer.error().ToString();

  EXPECT_EQ(layer->blob.digest, Digest::Sha256Of(layer->bytes));
  EXPECT_EQ(layer->blob.size, static_cast<int64_t>(layer->bytes.size()));
  EXPECT_EQ(layer->blob.media_type, LayerMediaType(ManifestFormat::kOci, GetParam()));
  EXPECT_FALSE(layer->on_disk());

  Result<std::string> tar = Decompress(GetParam(), layer->bytes);
  ASSERT_TRUE(tar.has_value()) << tar.error().ToString();
  EXPECT_EQ(layer->diff_id, Digest::Sha256Of(*tar));
  EXPECT_EQ(layer->uncompressed_size, tar->size());
  EXPECT_EQ(*tar, RawTar(tree));
  if (GetParam() == Compression::kNone) {
    EXPECT_EQ(layer->blob.digest, layer->diff_id);
  } else {
    EXPECT_NE(layer->blob.digest, layer->diff_id);
    EXPECT_LT(layer->bytes.size(), tar->size());
  }

  // libarchive recognises the compression on its own and sees the same entries.
  Result<std::vector<testing::ReadEntry>> entries = testing::ReadTar(layer->bytes);
  ASSERT_TRUE(entries.has_value()) << entries.error().ToString();
  ASSERT_EQ(entries->size(), 4u);
  EXPECT_EQ((*entries)[2].content, std::string(200'000, 'z') + "tail");
}

TEST_P(LayerCompressionTest, SameTreeGivesSameDigests) {
  Result<Layer> first = BuildLayer(SampleTree(), {.compression = GetParam()});
  Result<Layer> second = BuildLayer(SampleTree(), {.compression = GetParam()});
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_EQ(first->blob.digest, second->blob.digest);
  EXPECT_EQ(first->diff_id, second->diff_id);
}

TEST_P(LayerCompressionTest, FileLayerMatchesMemoryLayer) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("imagegen-layer"));
  std::filesystem::path path = dir.Join("layer");
  Result<Layer> on_disk = BuildLayerFile(SampleTree(), path, {.compression = GetParam()});
  ASSERT_TRUE(on_disk.has_value()) << on_disk.error().ToString();
  Result<Layer> in_memory = BuildLayer(SampleTree(), {.compression = GetParam()});
  ASSERT_TRUE(in_memory.has_value());
  EXPECT_TRUE(on_disk->on_disk());
  EXPECT_EQ(on_disk->blob, in_memory->blob);
  EXPECT_EQ(on_disk->diff_id, in_memory->diff_id);
  Result<std::string> bytes = ReadFile(path);
  ASSERT_TRUE(bytes.has_value());
  EXPECT_EQ(*bytes, in_memory->bytes);
}

INSTANTIATE_TEST_SUITE_P(AllCompressions, LayerCompressionTest,
                         ::testing::Values(Compression::kNone, Compression::kGzip,
                                           Compression::kZstd),
                         [](const auto& param_info) {
                           return std::string(CompressionName(param_info.param));
                         });

TEST(GzipTest, HeaderCarriesNoNameAndNoMtime) {
  Result<Layer> layer = BuildLayer(SampleTree(), {.compression = Compression::kGzip});
  ASSERT_TRUE(layer.has_value());
  const std::string& bytes = layer->bytes;
  ASSERT_GT(bytes.size(), 10u);
  EXPECT_EQ(static_cast<unsigned char>(bytes[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(bytes[1]), 0x8b);
  EXPECT_EQ(bytes[3], '\0');                            // FLG: no FNAME, FCOMMENT, FEXTRA.
  EXPECT_EQ(bytes.substr(4, 4), std::string(4, '\0'));  // MTIME = 0.
}

TEST(ZstdTest, LevelChangesOutputButNotDiffId) {
  Result<Layer> fast = BuildLayer(SampleTree(), {.compression = Compression::kZstd, .level = 1});
  Result<Layer> strong = BuildLayer(SampleTree(), {.compression = Compression::kZstd, .level = 19});
  ASSERT_TRUE(fast.has_value() && strong.has_value());
  EXPECT_EQ(fast->diff_id, strong->diff_id);
  EXPECT_EQ(Decompress(Compression::kZstd, strong->bytes).value(),
            Decompress(Compression::kZstd, fast->bytes).value());
}

TEST(DecompressTest, RejectsCorruptStreams) {
  Result<Layer> layer = BuildLayer(SampleTree(), {.compression = Compression::kGzip});
  ASSERT_TRUE(layer.has_value());
  std::string truncated = layer->bytes.substr(0, layer->bytes.size() / 2);
  Result<std::string> gunzipped = Decompress(Compression::kGzip, truncated);
  ASSERT_FALSE(gunzipped.has_value());
  EXPECT_EQ(gunzipped.error().code(), ErrorCode::kDataLoss);
  Result<std::string> unzstd = Decompress(Compression::kZstd, "not zstd at all");
  ASSERT_FALSE(unzstd.has_value());
  EXPECT_EQ(unzstd.error().code(), ErrorCode::kDataLoss);
}

TEST(LayerMediaTypeTest, FollowsFormatAndCompression) {
  EXPECT_EQ(LayerMediaType(ManifestFormat::kOci, Compression::kNone),
            "application/vnd.oci.image.layer.v1.tar");
  EXPECT_EQ(LayerMediaType(ManifestFormat::kOci, Compression::kGzip),
            "application/vnd.oci.image.layer.v1.tar+gzip");
  EXPECT_EQ(LayerMediaType(ManifestFormat::kOci, Compression::kZstd),
            "application/vnd.oci.image.layer.v1.tar+zstd");
  EXPECT_EQ(LayerMediaType(ManifestFormat::kDocker, Compression::kNone),
            "application/vnd.docker.image.rootfs.diff.tar");
  EXPECT_EQ(LayerMediaType(ManifestFormat::kDocker, Compression::kGzip),
            "application/vnd.docker.image.rootfs.diff.tar.gzip");
  EXPECT_EQ(LayerMediaType(ManifestFormat::kDocker, Compression::kZstd),
            "application/vnd.docker.image.rootfs.diff.tar.zstd");
}

}  // namespace
}  // namespace berth::imagegen
