#include "test/integration/pull_fixture.h"

#include <utility>

#include "berth/base/cancel.h"
#include "berth/image/platform.h"
#include "testing/result_matchers.h"
#include "testing/secret_sentinel.h"

namespace berth::pull {

PullOptions Amd64() {
  PullOptions options;
  Result<image::Platform> platform = image::ParsePlatform("linux/amd64");
  EXPECT_TRUE(platform);
  if (platform) options.platform = *platform;
  return options;
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
