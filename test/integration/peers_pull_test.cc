// End-to-end tests of pulling through peers (issue 17, the pulling side): a real Puller, content
// store and CurlTransport, an origin Distribution registry R holding an image, and a "peer" P
// that is another Distribution registry holding some of the image's blobs under the same
// repository (it speaks the protocol a berth peer speaks). peers.static = [P].
//
//   - P's blobs come from P (its access log shows GET …?ns=<R>), the rest from R;
//   - P stopped (a dead peer): the pull completes from R;
//   - P behind a FaultProxy that corrupts its blobs: the bytes fail verification, P is given up
//     on (observer and log name it), the pull completes from R with the right image;
//   - P behind a FaultProxy that stalls: the progress watchdog gives up on it and R serves the
//     rest (Range).
//
// No assertion depends on timing: the watchdog's timeout is short (1 s) only to keep the tests
// quick.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "berth/base/cancel.h"
#include "berth/base/log.h"
#include "berth/config/config.h"
#include "berth/peers/membership.h"
#include "berth/pull/puller.h"
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

using berth::testing::FaultAction;
using berth::testing::FaultProxy;
using berth::testing::TestRegistry;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kRepository = "demo";

std::unique_ptr<imagegen::RegistryClient> ClientFor(const TestRegistry& registry) {
  Result<std::unique_ptr<imagegen::RegistryClient>> client =
      imagegen::RegistryClient::Create({.base_url = registry.url()});
  EXPECT_OK(client);
  return client ? std::move(*client) : nullptr;
}

class PeersPullTest : public PullFixture {
 protected:
  PeersPullTest() : PullFixture("peers-pull-test") {}

  void SetUp() override {
    CapturedLog::Get();
    PullFixture::SetUp();
    image_ = ThreeLayerImage(64 << 10);
    ASSERT_OK_AND_ASSIGN(origin_, TestRegistry::Start({.log_level = "info"}));
    ASSERT_OK_AND_ASSIGN(peer_, TestRegistry::Start({.log_level = "info"}));
    auto origin_client = ClientFor(*origin_);
    ASSERT_TRUE(origin_client);
    ASSERT_OK(imagegen::PushImage(*origin_client, kRepository, "v1", image_));
    // The peer holds the config and the first layer, as a node that pulled them would.
    auto peer_client = ClientFor(*peer_);
    ASSERT_TRUE(peer_client);
    ASSERT_OK(peer_client->PushBlob(kRepository, image_.config.digest, image_.config_json));
    ASSERT_OK(
        peer_client->PushBlob(kRepository, image_.layers[0].blob.digest, image_.layers[0].bytes));
  }

  // Pulls R's image with `peer_address` as the one static peer, and checks the image.
  Result<PulledImage> PullWithPeer(const std::string& peer_address) {
    config::Config config = config::DefaultConfig();
    config.root = dir_.path();
    config.pull.image_pull_progress_timeout = std::chrono::seconds(1);
    config.peers.static_peers = {peer_address};
    Result<std::unique_ptr<peers::Membership>> membership =
        peers::Membership::Create({.static_peers = config.peers.static_peers});
    if (!membership) return Fail(std::move(membership).error());
    BERTH_RETURN_IF_ERROR((*membership)->Refresh());
    Puller puller(*store_, *transport_, config, nullptr, &reports_, membership->get());
    Result<PulledImage> pulled =
        puller.Pull(origin_->host() + "/demo:v1", Amd64(), {}, CancelToken::Never());
    if (pulled) ExpectTheImage(*pulled);
    return pulled;
  }

  void ExpectTheImage(const PulledImage& pulled) {
    EXPECT_EQ(pulled.image_id, image_.config.digest);
    EXPECT_TRUE(store_->Contains(image_.config.digest));
    for (const imagegen::Layer& layer : image_.layers) {
      EXPECT_TRUE(store_->Contains(layer.blob.digest)) << layer.blob.digest.ToString();
    }
  }

  // Whether `registry`'s access log shows a GET of `digest`'s blob (with ?ns=<R> when
  // `from_peer`).
  bool ServedBlob(const TestRegistry& registry, const Digest& digest, bool from_peer) {
    const std::string path = fmt::format("GET /v2/demo/blobs/{}", digest);
    const std::string log = registry.ReadLog();
    // The query is form-encoded, as containerd's: ns=127.0.0.1%3A5000.
    std::string ns = origin_->host();
    ns.replace(ns.find(':'), 1, "%3A");
    return from_peer ? log.find(path + "?ns=" + ns + " ") != std::string::npos
                     : log.find(path + " ") != std::string::npos;
  }

  imagegen::Image image_;
  std::unique_ptr<TestRegistry> origin_;
  std::unique_ptr<TestRegistry> peer_;
  PeerReports reports_;
};

TEST_F(PeersPullTest, ThePeersBlobsComeFromThePeerAndTheRestFromTheRegistry) {
  ASSERT_OK(PullWithPeer(peer_->host()));
  EXPECT_TRUE(ServedBlob(*peer_, image_.config.digest, true)) << peer_->ReadLog();
  EXPECT_TRUE(ServedBlob(*peer_, image_.layers[0].blob.digest, true)) << peer_->ReadLog();
  EXPECT_FALSE(ServedBlob(*origin_, image_.config.digest, false)) << origin_->ReadLog();
  EXPECT_FALSE(ServedBlob(*origin_, image_.layers[0].blob.digest, false)) << origin_->ReadLog();
  for (size_t i = 1; i < image_.layers.size(); ++i) {
    EXPECT_TRUE(ServedBlob(*origin_, image_.layers[i].blob.digest, false)) << origin_->ReadLog();
  }
  // Manifests always come from the registry.
  EXPECT_THAT(peer_->ReadLog(), Not(HasSubstr("/manifests/")));
  EXPECT_EQ(reports_.peer_bytes(),
            image_.config_json.size() + static_cast<uint64_t>(image_.layers[0].blob.size));
  // The peer lacks the other two layers: given up on for each (not found).
  EXPECT_EQ(reports_.given_up(),
            (std::vector<std::string>{peer_->host() + " not_found", peer_->host() + " not_found"}));
}

TEST_F(PeersPullTest, ADeadPeerIsGivenUpOnAndTheRegistryServesEverything) {
  const std::string address = peer_->host();
  peer_->Stop();
  ASSERT_OK(PullWithPeer(address));
  EXPECT_EQ(reports_.peer_bytes(), 0u);
  for (const imagegen::Layer& layer : image_.layers) {
    EXPECT_TRUE(ServedBlob(*origin_, layer.blob.digest, false)) << origin_->ReadLog();
  }
  ASSERT_FALSE(reports_.given_up().empty());
  EXPECT_EQ(reports_.given_up()[0], address + " unavailable");
}

TEST_F(PeersPullTest, APeerSendingCorruptBytesIsGivenUpOnAndTheImageIsRight) {
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(peer_->host()));
  ASSERT_OK(proxy->AddRule(
      {.method = "GET", .target_contains = "/blobs/", .action = FaultAction::CorruptByteAt(100)}));
  const size_t log_start = CapturedLog::Get().Text().size();
  ASSERT_OK(PullWithPeer(proxy->host()));
  EXPECT_TRUE(ServedBlob(*origin_, image_.config.digest, false)) << origin_->ReadLog();
  EXPECT_TRUE(ServedBlob(*origin_, image_.layers[0].blob.digest, false)) << origin_->ReadLog();
  const std::vector<std::string> given_up = reports_.given_up();
  EXPECT_EQ(std::count(given_up.begin(), given_up.end(), proxy->host() + " bad_bytes"), 2)
      << ::testing::PrintToString(given_up);
  const std::string log = CapturedLog::Get().Text().substr(log_start);
  EXPECT_THAT(log, AllOf(HasSubstr("peers.peer_given_up"), HasSubstr("peer=" + proxy->host()),
                         HasSubstr("reason=bad_bytes")))
      << log;
}

TEST_F(PeersPullTest, AStallingPeerIsGivenUpOnByTheWatchdogAndTheRegistryServesTheRest) {
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(peer_->host()));
  const std::string layer = image_.layers[0].blob.digest.ToString();
  ASSERT_OK(proxy->AddRule(
      {.method = "GET", .target_contains = layer, .action = FaultAction::StallAfterBytes(1000)}));
  ASSERT_OK(PullWithPeer(proxy->host()));
  const std::vector<std::string> given_up = reports_.given_up();
  EXPECT_EQ(std::count(given_up.begin(), given_up.end(), proxy->host() + " unavailable"), 1)
      << ::testing::PrintToString(given_up);
  // The registry sent the rest of the layer (a Range request from the peer's 1000 bytes).
  EXPECT_TRUE(origin_->ReadLog().find(fmt::format("GET /v2/demo/blobs/{}", layer)) !=
              std::string::npos)
      << origin_->ReadLog();
  EXPECT_EQ(proxy->BodyBytesSent("GET", layer), 1000u) << proxy->DescribeRequests();
}

}  // namespace
}  // namespace berth::pull
