#include "test/integration/pull_fixture.h"

#include <spdlog/sinks/ostream_sink.h>

#include <random>
#include <utility>

#include "berth/base/cancel.h"
#include "berth/base/log.h"
#include "berth/image/platform.h"
#include "testing/result_matchers.h"
#include "testing/secret_sentinel.h"
#include "tools/imagegen/file_tree.h"
#include "tools/imagegen/layer.h"

namespace berth::pull {

PullOptions Amd64() {
  PullOptions options;
  Result<image::Platform> platform = image::ParsePlatform("linux/amd64");
  EXPECT_TRUE(platform);
  if (platform) options.platform = *platform;
  return options;
}

std::string IncompressibleBytes(size_t size, uint32_t seed) {
  std::mt19937_64 random(seed);
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(random());
  return bytes;
}

imagegen::Image ThreeLayerImage(size_t layer_bytes) {
  std::vector<imagegen::Layer> layers;
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    imagegen::FileTree tree;
    tree.AddFile("data/blob-" + std::to_string(seed), IncompressibleBytes(layer_bytes, seed));
    Result<imagegen::Layer> layer = imagegen::BuildLayer(tree);
    EXPECT_OK(layer);
    if (layer) layers.push_back(std::move(*layer));
  }
  Result<imagegen::Image> image =
      imagegen::AssembleImage({.architecture = "amd64", .cmd = {"/bin/sh"}}, std::move(layers),
                              imagegen::ManifestFormat::kOci, {});
  EXPECT_OK(image);
  return image ? std::move(*image) : imagegen::Image{};
}

CapturedLog& CapturedLog::Get() {
  static CapturedLog* log = new CapturedLog();
  return *log;
}

std::string CapturedLog::Text() {
  std::lock_guard lock(mutex_);
  return stream_.str();
}

CapturedLog::CapturedLog() {
  log::AddSinkForTest(std::make_shared<spdlog::sinks::ostream_sink_mt>(stream_));
}

PullFixture::PullFixture(std::string dir_prefix) : dir_prefix_(std::move(dir_prefix)) {}

void PullFixture::SetUp() {
  ASSERT_OK_AND_ASSIGN(dir_, berth::testing::TempDir::Create(dir_prefix_));
  ASSERT_OK_AND_ASSIGN(store_, content::Store::Open({.root = dir_.Join("content"),
                                                     .durability = Durability::kNone}));
  ASSERT_OK_AND_ASSIGN(transport_, registry::CurlTransport::Create());
}

std::unique_ptr<Puller> PullFixture::MakePuller(config::Config config,
                                                DownloadScheduler* scheduler) {
  config.root = dir_.path();
  return std::make_unique<Puller>(*store_, *transport_, std::move(config), scheduler);
}

Result<PulledImage> PullFixture::Pull(const config::Config& config, const std::string& reference,
                                      const PullOptions& options) {
  Result<PulledImage> pulled =
      MakePuller(config)->Pull(reference, options, {}, CancelToken::Never());
  if (!pulled) berth::testing::NoteProductOutput("pull error", pulled.error().ToString());
  return pulled;
}

Result<PulledImage> PullFixture::Pull(const std::string& reference, const PullOptions& options) {
  return Pull(config::DefaultConfig(), reference, options);
}

}  // namespace berth::pull
