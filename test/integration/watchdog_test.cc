// End-to-end tests of the pull watchdogs and the node-wide download scheduler: a real Puller,
// content store and CurlTransport against real Distribution registries, with FaultProxy in front
// to stall or slow down a mirror and to count the blob requests running at once.
//
//   - a mirror that stalls mid-blob: image_pull_progress_timeout gives up on it and the
//     upstream serves the rest of each blob (Range), so the pull succeeds;
//   - a mirror that drips bytes below min_download_speed: abandoned the same way;
//   - a lone registry that stalls: the pull fails with UNAVAILABLE naming it and the timeout;
//   - two pulls at once never run more blob downloads than max_concurrent_downloads_total.
//
// No assertion depends on timing: the watchdogs' timeouts are short (1 s) only so the tests are
// quick, and what is asserted is which endpoint served which bytes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "berth/base/cancel.h"
#include "berth/base/log.h"
#include "berth/config/config.h"
#include "berth/content/store.h"
#include "berth/pull/download_scheduler.h"
#include "berth/pull/puller.h"
#include "berth/registry/curl_transport.h"
#include "berth/registry/observer.h"
#include "test/integration/pull_fixture.h"
#include "testing/fault_proxy.h"
#include "testing/result_matchers.h"
#include "testing/test_registry.h"
#include "tools/imagegen/file_tree.h"
#include "tools/imagegen/image.h"
#include "tools/imagegen/layer.h"
#include "tools/imagegen/push.h"
#include "tools/imagegen/registry_client.h"

namespace berth::pull {
namespace {

using ::berth::testing::FailsWith;

using berth::testing::FaultAction;
using berth::testing::FaultProxy;
using berth::testing::ProxiedRequest;
using berth::testing::TestRegistry;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr std::string_view kRepository = "demo";
constexpr uint64_t kStallAfter = 1000;  // body bytes a stalling proxy sends before going quiet

imagegen::Layer MakeLayer(size_t size, uint32_t seed) {
  imagegen::FileTree tree;
  tree.AddFile("data/blob-" + std::to_string(seed), IncompressibleBytes(size, seed));
  Result<imagegen::Layer> layer = imagegen::BuildLayer(tree);
  EXPECT_OK(layer);
  return layer ? std::move(*layer) : imagegen::Layer{};
}

imagegen::Image MakeImage(std::vector<imagegen::Layer> layers) {
  Result<imagegen::Image> image =
      imagegen::AssembleImage({.architecture = "amd64", .cmd = {"/bin/sh"}}, std::move(layers),
                              imagegen::ManifestFormat::kOci, {});
  EXPECT_OK(image);
  return image ? std::move(*image) : imagegen::Image{};
}

std::unique_ptr<TestRegistry> StartRegistry() {
  Result<std::unique_ptr<TestRegistry>> registry = TestRegistry::Start({.log_level = "warn"});
  EXPECT_OK(registry);
  return registry ? std::move(*registry) : nullptr;
}

std::unique_ptr<FaultProxy> StartProxy(const std::string& upstream) {
  Result<std::unique_ptr<FaultProxy>> proxy = FaultProxy::Start(upstream);
  EXPECT_OK(proxy);
  return proxy ? std::move(*proxy) : nullptr;
}

bool Push(const TestRegistry& registry, std::string_view tag, const imagegen::Image& image) {
  Result<std::unique_ptr<imagegen::RegistryClient>> client =
      imagegen::RegistryClient::Create({.base_url = registry.url()});
  EXPECT_OK(client);
  if (!client) return false;
  Result<imagegen::PushedImage> pushed = imagegen::PushImage(**client, kRepository, tag, image);
  EXPECT_OK(pushed);
  return pushed.has_value();
}

// Counts the watchdog trips the transport reports (registry/observer.h), as berthd's metrics do.
class WatchdogCounter final : public registry::RegistryObserver {
 public:
  void RequestDone(std::string_view, registry::FetchKind, int, uint64_t) override {}
  void Retried(std::string_view, registry::RetryReason) override {}
  void FellBack(std::string_view) override {}
  void EndpointDead(std::string_view) override {}
  void WatchdogTripped(registry::Watchdog watchdog) override {
    (watchdog == registry::Watchdog::kStall ? stalls : too_slow).fetch_add(1);
  }
  std::atomic<int> stalls{0};
  std::atomic<int> too_slow{0};
};

class WatchdogTest : public PullFixture {
 protected:
  WatchdogTest() : PullFixture("watchdog-test") {}

  void SetUp() override {
    CapturedLog::Get();
    PullFixture::SetUp();
    // The fixture's transport, reporting to watchdogs_.
    ASSERT_OK_AND_ASSIGN(transport_, registry::CurlTransport::Create(&watchdogs_));
  }

  WatchdogCounter watchdogs_;

  // A config whose only mirror for `host` is `mirror_url`, with a 1 s progress timeout.
  static config::Config MirrorConfig(const std::string& host, const std::string& mirror_url) {
    config::Config config = config::DefaultConfig();
    config.registry.mirrors[host].endpoints = {mirror_url};
    config.pull.image_pull_progress_timeout = std::chrono::seconds(1);
    return config;
  }

  // Every layer's bytes were sent exactly once across the two proxies: what the mirror sent
  // before it was abandoned, the upstream sent the rest of (a Range request), no more.
  void ExpectEachLayerSentOnceAcross(const imagegen::Image& image, const FaultProxy& mirror,
                                     const FaultProxy& upstream) {
    for (const imagegen::Layer& layer : image.layers) {
      const std::string digest = layer.blob.digest.ToString();
      EXPECT_TRUE(store_->Contains(layer.blob.digest)) << digest;
      EXPECT_EQ(mirror.BodyBytesSent("", digest) + upstream.BodyBytesSent("", digest),
                static_cast<uint64_t>(layer.blob.size))
          << digest << "\nmirror:\n"
          << mirror.DescribeRequests() << "upstream:\n"
          << upstream.DescribeRequests();
    }
  }
};

// (a) The mirror answers blob requests with their headers and the first bytes, then nothing.
TEST_F(WatchdogTest, StalledMirrorTimesOutAndUpstreamServesTheRest) {
  auto upstream = StartRegistry();
  auto mirror = StartRegistry();
  ASSERT_TRUE(upstream && mirror);
  imagegen::Image image = MakeImage({MakeLayer(300 << 10, 1), MakeLayer(200 << 10, 2)});
  ASSERT_TRUE(Push(*upstream, "stall", image));
  ASSERT_TRUE(Push(*mirror, "stall", image));
  auto upstream_proxy = StartProxy(upstream->host());
  auto mirror_proxy = StartProxy(mirror->host());
  ASSERT_TRUE(upstream_proxy && mirror_proxy);
  for (const imagegen::Layer& layer : image.layers) {
    ASSERT_TRUE(mirror_proxy->AddRule({.method = "GET",
                                       .target_contains = layer.blob.digest.ToString(),
                                       .action = FaultAction::StallAfterBytes(kStallAfter)}));
  }
  const size_t log_start = CapturedLog::Get().Text().size();

  Result<PulledImage> pulled = Pull(MirrorConfig(upstream_proxy->host(), mirror_proxy->url()),
                                    upstream_proxy->host() + "/demo:stall");
  ASSERT_OK(pulled);
  EXPECT_EQ(pulled->image_id, image.config.digest);

  // The mirror served the manifest and config and stalled on (at least) the first layer; the
  // upstream served each layer's remainder.
  EXPECT_EQ(mirror_proxy->RequestCount("GET", "/manifests/stall"), 1u)
      << mirror_proxy->DescribeRequests();
  uint64_t stalled = 0;
  for (const ProxiedRequest& request : mirror_proxy->requests()) {
    if (request.rule_id != 0) {
      ++stalled;
      EXPECT_EQ(request.body_bytes_sent, kStallAfter) << request.target;
    }
  }
  EXPECT_GE(stalled, 1u) << mirror_proxy->DescribeRequests();
  EXPECT_EQ(watchdogs_.stalls.load(), static_cast<int>(stalled));
  EXPECT_EQ(watchdogs_.too_slow.load(), 0);
  EXPECT_EQ(upstream_proxy->RequestCount("GET", "/manifests/"), 0u)
      << upstream_proxy->DescribeRequests();
  ExpectEachLayerSentOnceAcross(image, *mirror_proxy, *upstream_proxy);

  // The log says which endpoint was abandoned, why, and where the pull went next.
  std::string log = CapturedLog::Get().Text().substr(log_start);
  EXPECT_THAT(log, AllOf(HasSubstr("registry.endpoint_failed"),
                         HasSubstr("endpoint=" + mirror_proxy->url()),
                         // Not contacted yet: the loopback upstream is named as configured,
                         // https first (then plain http, containerd's localhost rule).
                         HasSubstr("next=https://" + upstream_proxy->host()),
                         HasSubstr("no data received for 1s (image_pull_progress_timeout)")))
      << log;
}

// (b) The mirror drips 1 KiB every 200 ms (about 5 KiB/s), under a 64 KiB/s floor.
TEST_F(WatchdogTest, SlowDripMirrorBelowTheThroughputFloorIsAbandoned) {
  auto upstream = StartRegistry();
  auto mirror = StartRegistry();
  ASSERT_TRUE(upstream && mirror);
  imagegen::Image image = MakeImage({MakeLayer(256 << 10, 3)});
  ASSERT_TRUE(Push(*upstream, "drip", image));
  ASSERT_TRUE(Push(*mirror, "drip", image));
  auto upstream_proxy = StartProxy(upstream->host());
  auto mirror_proxy = StartProxy(mirror->host());
  ASSERT_TRUE(upstream_proxy && mirror_proxy);
  const std::string layer_digest = image.layers[0].blob.digest.ToString();
  ASSERT_TRUE(mirror_proxy->AddRule(
      {.method = "GET",
       .target_contains = layer_digest,
       .action = FaultAction::SlowDrip(1024, std::chrono::milliseconds(200))}));
  const size_t log_start = CapturedLog::Get().Text().size();

  config::Config config = MirrorConfig(upstream_proxy->host(), mirror_proxy->url());
  config.pull.image_pull_progress_timeout = std::chrono::minutes(5);  // bytes keep coming
  config.pull.min_download_speed = 64 << 10;
  config.pull.min_download_speed_window = std::chrono::seconds(1);
  Result<PulledImage> pulled = Pull(config, upstream_proxy->host() + "/demo:drip");
  ASSERT_OK(pulled);
  EXPECT_EQ(pulled->image_id, image.config.digest);

  EXPECT_EQ(mirror_proxy->RequestCount("GET", layer_digest), 1u)
      << mirror_proxy->DescribeRequests();
  EXPECT_EQ(watchdogs_.too_slow.load(), 1);
  EXPECT_EQ(watchdogs_.stalls.load(), 0);
  EXPECT_GT(mirror_proxy->BodyBytesSent("", layer_digest), 0u) << mirror_proxy->DescribeRequests();
  // The upstream resumed from what the mirror had delivered (a Range request), rather than
  // sending the whole blob again. (The proxy's count of what the mirror sent may include a piece
  // sent after the client had left, so the two are not summed exactly here.)
  EXPECT_TRUE(store_->Contains(image.layers[0].blob.digest));
  EXPECT_EQ(upstream_proxy->RequestCount("GET", layer_digest), 1u)
      << upstream_proxy->DescribeRequests();
  EXPECT_LT(upstream_proxy->BodyBytesSent("", layer_digest),
            static_cast<uint64_t>(image.layers[0].blob.size))
      << upstream_proxy->DescribeRequests();
  EXPECT_GE(mirror_proxy->BodyBytesSent("", layer_digest) +
                upstream_proxy->BodyBytesSent("", layer_digest),
            static_cast<uint64_t>(image.layers[0].blob.size));
  std::string log = CapturedLog::Get().Text().substr(log_start);
  EXPECT_THAT(log,
              AllOf(HasSubstr("endpoint=" + mirror_proxy->url()), HasSubstr("too slow"),
                    HasSubstr("below the minimum of 64 KiB/s"), HasSubstr("min_download_speed")))
      << log;
}

// (c) With no other endpoint, a stall fails the pull. UNAVAILABLE, not DEADLINE_EXCEEDED: no
// deadline of the caller's passed; the registry stopped serving, which is what UNAVAILABLE
// means (and it tells a CRI client that retrying later may work).
TEST_F(WatchdogTest, LoneStalledRegistryFailsUnavailableNamingItAndTheTimeout) {
  auto registry = StartRegistry();
  ASSERT_TRUE(registry);
  imagegen::Image image = MakeImage({MakeLayer(100 << 10, 4)});
  ASSERT_TRUE(Push(*registry, "lone", image));
  auto proxy = StartProxy(registry->host());
  ASSERT_TRUE(proxy);
  const std::string layer_digest = image.layers[0].blob.digest.ToString();
  ASSERT_TRUE(proxy->AddRule({.method = "GET",
                              .target_contains = layer_digest,
                              .action = FaultAction::StallAfterBytes(kStallAfter)}));
  config::Config config = config::DefaultConfig();
  config.pull.image_pull_progress_timeout = std::chrono::seconds(1);

  Result<PulledImage> pulled = Pull(config, proxy->host() + "/demo:lone");
  ASSERT_FALSE(pulled);
  EXPECT_THAT(pulled, FailsWith(ErrorCode::kUnavailable));
  EXPECT_THAT(pulled.error().ToString(),
              AllOf(HasSubstr("pull " + proxy->host() + "/demo:lone"),
                    HasSubstr(proxy->url() + "/v2/demo/blobs/" + layer_digest),
                    HasSubstr("no data received for 1s (image_pull_progress_timeout) after"),
                    HasSubstr("raise image_pull_progress_timeout")));
  // Given up at once, not retried on the same endpoint.
  EXPECT_EQ(proxy->RequestCount("GET", layer_digest), 1u) << proxy->DescribeRequests();
  EXPECT_FALSE(store_->Contains(image.layers[0].blob.digest));
}

// Two pulls of different images at once, each allowed 3 downloads, under a node-wide limit of
// 2: the registry never sees more than 2 blob GETs in progress. Each blob GET is held 300 ms by
// the proxy so that, without the limit, up to 6 would overlap.
TEST_F(WatchdogTest, TwoPullsNeverExceedTheGlobalDownloadLimit) {
  auto registry = StartRegistry();
  ASSERT_TRUE(registry);
  imagegen::Image first = MakeImage({MakeLayer(20 << 10, 10), MakeLayer(20 << 10, 11),
                                     MakeLayer(20 << 10, 12), MakeLayer(20 << 10, 13)});
  imagegen::Image second = MakeImage({MakeLayer(20 << 10, 20), MakeLayer(20 << 10, 21),
                                      MakeLayer(20 << 10, 22), MakeLayer(20 << 10, 23)});
  ASSERT_TRUE(Push(*registry, "first", first));
  ASSERT_TRUE(Push(*registry, "second", second));
  auto proxy = StartProxy(registry->host());
  ASSERT_TRUE(proxy);
  ASSERT_TRUE(proxy->AddRule({.method = "GET",
                              .target_contains = "/blobs/",
                              .action = FaultAction::Delay(std::chrono::milliseconds(300))}));

  config::Config config = config::DefaultConfig();
  config.pull.max_concurrent_downloads = 3;
  config.pull.max_concurrent_downloads_total = 2;
  config.pull.max_concurrent_downloads_per_registry = 0;
  DownloadScheduler scheduler({.max_total = 2});
  Result<PulledImage> pulled_first = Fail(ErrorCode::kInternal, "not run");
  Result<PulledImage> pulled_second = Fail(ErrorCode::kInternal, "not run");
  {
    std::unique_ptr<Puller> puller = MakePuller(config, &scheduler);
    std::thread one([&] {
      pulled_first = puller->Pull(proxy->host() + "/demo:first", Amd64(), {}, CancelToken::Never());
    });
    std::thread two([&] {
      pulled_second =
          puller->Pull(proxy->host() + "/demo:second", Amd64(), {}, CancelToken::Never());
    });
    one.join();
    two.join();
  }
  ASSERT_OK(pulled_first);
  ASSERT_OK(pulled_second);
  EXPECT_EQ(pulled_first->image_id, first.config.digest);
  EXPECT_EQ(pulled_second->image_id, second.config.digest);

  // 2 configs + 8 layers, each fetched once, each under a permit.
  EXPECT_EQ(proxy->RequestCount("GET", "/blobs/"), 10u) << proxy->DescribeRequests();
  EXPECT_EQ(scheduler.stats().granted, 10u);
  EXPECT_LE(scheduler.stats().max_running, 2);
  const uint64_t most = proxy->MaxConcurrentRequests("GET", "/blobs/");
  EXPECT_LE(most, 2u) << proxy->DescribeRequests();
  EXPECT_GE(most, 1u);
  std::printf("blob GETs in progress at once: at most %llu (limit 2)\n",
              static_cast<unsigned long long>(most));
}

}  // namespace
}  // namespace berth::pull
