// Hostile registries through a real pull: berth::pull::Puller with a content store on a temp
// dir and the curl transport, against a real Distribution registry (TestRegistry) with a
// FaultProxy in front that plays the hostile part, or small loopback servers (token realm,
// endless bodies). Each case asserts the error class and that nothing unverified was stored.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "berth/base/cancel.h"
#include "berth/config/config.h"
#include "berth/content/store.h"
#include "berth/image/media_types.h"
#include "berth/image/platform.h"
#include "berth/pull/puller.h"
#include "berth/registry/curl_transport.h"
#include "test/hostile/hostile_util.h"
#include "testing/fault_proxy.h"
#include "testing/secret_sentinel.h"
#include "testing/tcp_server.h"
#include "testing/temp_dir.h"
#include "testing/test_registry.h"
#include "tools/imagegen/file_tree.h"
#include "tools/imagegen/image.h"
#include "tools/imagegen/layer.h"
#include "tools/imagegen/push.h"
#include "tools/imagegen/registry_client.h"

namespace berth::hostile {
namespace {

using berth::testing::FaultAction;
using berth::testing::FaultProxy;
using berth::testing::TcpServer;
using berth::testing::TempDir;
using berth::testing::TestRegistry;

constexpr uint64_t kHundredMegabytes = uint64_t{100} << 20;

imagegen::Image MakeImage(size_t layer_bytes) {
  imagegen::FileTree tree;
  std::string data(layer_bytes, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 7919) >> 3);
  tree.AddFile("data/blob", data);
  Result<imagegen::Layer> layer = imagegen::BuildLayer(tree);
  EXPECT_TRUE(layer) << layer.error().ToString();
  Result<imagegen::Image> image = imagegen::AssembleImage(
      {.architecture = "amd64", .cmd = {"/bin/sh"}}, {layer ? *layer : imagegen::Layer{}});
  EXPECT_TRUE(image) << image.error().ToString();
  return image ? std::move(*image) : imagegen::Image{};
}

// Reads one request head from `fd` (up to the blank line); false if the peer went away.
bool ReadRequestHead(int fd) {
  std::string head;
  char buffer[4096];
  while (head.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n <= 0) return false;
    head.append(buffer, static_cast<size_t>(n));
  }
  return true;
}

// Sends a 200 whose Content-Length says `declared` bytes of JSON, generated as it is sent, until
// the client stops reading. Counts the body bytes the kernel accepted.
berth::testing::ConnectionHandler EndlessJson(uint64_t declared, std::atomic<uint64_t>& sent) {
  return [declared, &sent](int fd, const std::string&) {
    if (!ReadRequestHead(fd)) return;
    std::string head = fmt::format(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n"
        "{{\"token\":\"",
        declared);
    if (::send(fd, head.data(), head.size(), MSG_NOSIGNAL) < 0) return;
    const std::string chunk(64 << 10, 't');
    for (uint64_t done = 10; done < declared; done += chunk.size()) {
      ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<uint64_t>(n);
    }
  };
}

class RegistryHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<TempDir> dir = TempDir::Create("hostile-pull");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
    Result<std::unique_ptr<content::Store>> store =
        content::Store::Open({.root = dir_->Join("content"), .durability = Durability::kNone});
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    Result<std::unique_ptr<registry::CurlTransport>> transport = registry::CurlTransport::Create();
    ASSERT_TRUE(transport) << transport.error().ToString();
    transport_ = std::move(*transport);

    Result<std::unique_ptr<TestRegistry>> registry = TestRegistry::Start({.log_level = "warn"});
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = std::move(*registry);
    image_ = MakeImage(256 << 10);
    Result<std::unique_ptr<imagegen::RegistryClient>> client =
        imagegen::RegistryClient::Create({.base_url = registry_->url()});
    ASSERT_TRUE(client) << client.error().ToString();
    Result<imagegen::PushedImage> pushed = imagegen::PushImage(**client, "demo", "v1", image_);
    ASSERT_TRUE(pushed) << pushed.error().ToString();
    Result<std::unique_ptr<FaultProxy>> proxy = FaultProxy::Start(registry_->host());
    ASSERT_TRUE(proxy) << proxy.error().ToString();
    proxy_ = std::move(*proxy);
  }

  config::Config Config(std::chrono::milliseconds progress_timeout = std::chrono::seconds(30)) {
    config::Config config = config::DefaultConfig();
    config.root = dir_->path();
    config.pull.image_pull_progress_timeout = progress_timeout;
    return config;
  }

  Result<pull::PulledImage> Pull(const config::Config& config, const CancelToken& cancel,
                                 const std::string& tag = "v1") {
    pull::PullOptions options;
    Result<image::Platform> platform = image::ParsePlatform("linux/amd64");
    if (platform) options.platform = *platform;
    pull::Puller puller(*store_, *transport_, config);
    Result<pull::PulledImage> pulled =
        puller.Pull(proxy_->host() + "/demo:" + tag, options, {}, cancel);
    if (!pulled) berth::testing::NoteProductOutput("pull error", pulled.error().ToString());
    return pulled;
  }
  Result<pull::PulledImage> Pull() { return Pull(Config(), CancelToken::Never()); }

  // Serves `manifest_json` for the tag in the registry's place, with its true digest.
  void ServeManifest(const std::string& manifest_json) {
    ASSERT_TRUE(proxy_->AddRule(
        {.method = "GET",
         .target_contains = "/manifests/v1",
         .action = FaultAction::Respond(
             200,
             {{"Content-Type", std::string(media_types::kOciManifest)},
              {"Docker-Content-Digest", Digest::Sha256Of(manifest_json).ToString()}},
             manifest_json)}));
  }

  bool StoreHas(const imagegen::Descriptor& blob) { return store_->Contains(blob.digest); }

  std::optional<TempDir> dir_;
  std::unique_ptr<content::Store> store_;
  std::unique_ptr<registry::CurlTransport> transport_;
  std::unique_ptr<TestRegistry> registry_;
  std::unique_ptr<FaultProxy> proxy_;
  imagegen::Image image_;
};

TEST_F(RegistryHostileTest, Control) {
  Result<pull::PulledImage> pulled = Pull();
  ASSERT_TRUE(pulled) << pulled.error().ToString();
  EXPECT_TRUE(StoreHas(image_.layers[0].blob));
}

TEST_F(RegistryHostileTest, BlobLengthDisagreeingWithTheManifestIsDataLoss) {
  // The config, a blob streamed into the store like a layer, with a size that disagrees (first,
  // while the store does not hold it yet).
  nlohmann::json manifest = nlohmann::json::parse(image_.manifest_json);
  manifest["config"]["size"] = image_.config.size - 10;
  ASSERT_NO_FATAL_FAILURE(ServeManifest(manifest.dump()));
  EXPECT_TRUE(FailsWith(Pull(), ErrorCode::kDataLoss, "longer than its descriptor's"));
  EXPECT_FALSE(StoreHas(image_.config));

  // The registry serves the real layer; the manifest claims another size for it: longer
  // (the body ends early) and shorter (the body runs past it).
  for (auto [delta, phrase] : {std::pair{int64_t{1000}, "its descriptor says"},
                               std::pair{int64_t{-1000}, "is longer than its descriptor's"}}) {
    SCOPED_TRACE(delta);
    manifest = nlohmann::json::parse(image_.manifest_json);
    manifest["layers"][0]["size"] = image_.layers[0].blob.size + delta;
    proxy_->ClearRules();
    ASSERT_NO_FATAL_FAILURE(ServeManifest(manifest.dump()));
    EXPECT_TRUE(FailsWith(Pull(), ErrorCode::kDataLoss, phrase));
    EXPECT_FALSE(StoreHas(image_.layers[0].blob));
  }

  // Once the store holds the true blobs, nothing is downloaded to disagree with: the sizes the
  // manifest gives are compared with the stored blobs' instead.
  proxy_->ClearRules();
  ASSERT_TRUE(Pull());
  for (const char* field : {"config", "layer"}) {
    SCOPED_TRACE(field);
    manifest = nlohmann::json::parse(image_.manifest_json);
    nlohmann::json& descriptor =
        std::string_view(field) == "config" ? manifest["config"] : manifest["layers"][0];
    descriptor["size"] = descriptor["size"].get<int64_t>() + 1;
    proxy_->ClearRules();
    ASSERT_NO_FATAL_FAILURE(ServeManifest(manifest.dump()));
    EXPECT_TRUE(FailsWith(Pull(), ErrorCode::kDataLoss, "the manifest is wrong"));
  }
  EXPECT_TRUE(StoreHas(image_.config));
  EXPECT_TRUE(StoreHas(image_.layers[0].blob));
}

TEST_F(RegistryHostileTest, TokenResponseOfOneHundredMegabytesIsRefused) {
  std::atomic<uint64_t> sent{0};
  Result<std::unique_ptr<TcpServer>> realm = TcpServer::Start(EndlessJson(kHundredMegabytes, sent));
  ASSERT_TRUE(realm) << realm.error().ToString();
  const std::string challenge = fmt::format(
      "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"hostile\"", (*realm)->port());
  ASSERT_TRUE(proxy_->AddRule(
      {.action = FaultAction::Respond(401, {{"WWW-Authenticate", challenge}}, "{}")}));
  EXPECT_TRUE(FailsWith(Pull(), ErrorCode::kResourceExhausted, "byte limit"));
  (*realm)->Stop();
  // Read up to the limit and dropped: far less than the 100 MB on offer crossed the socket.
  EXPECT_LT(sent.load(), kHundredMegabytes / 4);
  EXPECT_FALSE(StoreHas(image_.config));
}

TEST_F(RegistryHostileTest, WwwAuthenticateOfOneMegabyteIsRefused) {
  const std::string challenge =
      "Bearer realm=\"http://127.0.0.1:1/token\",service=\"" + std::string(1 << 20, 's') + "\"";
  ASSERT_TRUE(proxy_->AddRule(
      {.action = FaultAction::Respond(401, {{"WWW-Authenticate", challenge}}, "{}")}));
  auto started = std::chrono::steady_clock::now();
  Result<pull::PulledImage> pulled = Pull();
  // curl holds at most 100 KiB per header line; the challenge parser would refuse anything over
  // 16 KiB. Either way it is refused at once (not retried), saying why.
  EXPECT_TRUE(FailsWith(pulled, ErrorCode::kResourceExhausted, "over curl's 100 KiB limit"));
  ASSERT_FALSE(pulled);
  EXPECT_LT(pulled.error().ToString().size(), 4096u) << "the header is echoed into the error";
  EXPECT_EQ(proxy_->RequestCount(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(60));
}

TEST_F(RegistryHostileTest, RedirectLoopIsUnavailable) {
  // Every blob request is sent back to itself.
  ASSERT_TRUE(proxy_->AddRule(
      {.method = "GET",
       .target_contains = "/blobs/",
       .action = FaultAction::Respond(307, {{"Location", proxy_->url() + "/v2/demo/blobs/" +
                                                             image_.config.digest.ToString()}})}));
  EXPECT_TRUE(FailsWith(Pull(), ErrorCode::kUnavailable, "more than 5 redirects"));
  EXPECT_LE(proxy_->RequestCount("GET", "/blobs/"), 10u);
  EXPECT_FALSE(StoreHas(image_.config));

  // And manifests redirected to a second hop that redirects back.
  proxy_->ClearRules();
  ASSERT_TRUE(proxy_->AddRule({.method = "GET",
                               .target_contains = "/manifests/v1",
                               .action = FaultAction::Respond(
                                   302, {{"Location", proxy_->url() + "/v2/demo/manifests/v2"}})}));
  ASSERT_TRUE(proxy_->AddRule({.method = "GET",
                               .target_contains = "/manifests/v2",
                               .action = FaultAction::Respond(
                                   302, {{"Location", proxy_->url() + "/v2/demo/manifests/v1"}})}));
  EXPECT_TRUE(FailsWith(Pull(), ErrorCode::kUnavailable, "more than 5 redirects"));
}

TEST_F(RegistryHostileTest, ResponseThatNeverFinishesTimesOut) {
  // Slowloris: the head comes at once, then one body byte every 5 s; the no-progress watchdog
  // (image_pull_progress_timeout) is 1 s.
  ASSERT_TRUE(proxy_->AddRule({.method = "GET",
                               .target_contains = image_.layers[0].blob.digest.ToString(),
                               .action = FaultAction::SlowDrip(1, std::chrono::seconds(5))}));
  // The watchdog gives up on the endpoint (UNAVAILABLE, so another endpoint may resume the
  // blob), naming the limit that fired.
  Result<pull::PulledImage> pulled = Pull(Config(std::chrono::seconds(1)), CancelToken::Never());
  EXPECT_TRUE(FailsWith(pulled, ErrorCode::kUnavailable,
                        "stalled: no data received for 1s (image_pull_progress_timeout)"));
  EXPECT_TRUE(FailsWith(pulled, ErrorCode::kUnavailable, image_.layers[0].blob.digest.ToString()));
  EXPECT_FALSE(StoreHas(image_.layers[0].blob));
}

TEST_F(RegistryHostileTest, ResponseThatNeverStartsIsCancelled) {
  // The manifest's head never comes; the watchdog is off, so only cancellation ends the pull.
  ASSERT_TRUE(proxy_->AddRule({.method = "GET",
                               .target_contains = "/manifests/",
                               .action = FaultAction::Delay(std::chrono::minutes(10))}));
  CancelToken cancel;
  std::thread canceller([&] {
    while (proxy_->RequestCount("GET", "/manifests/") == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    cancel.Cancel();
  });
  Result<pull::PulledImage> pulled = Pull(Config(std::chrono::milliseconds(0)), cancel);
  canceller.join();
  EXPECT_TRUE(FailsWith(pulled, ErrorCode::kCancelled, "cancel"));
}

}  // namespace
}  // namespace berth::hostile
