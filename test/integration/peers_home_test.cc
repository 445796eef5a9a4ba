// A home peer pulling through (issue 17): a real Distribution registry R behind a FaultProxy
// (which counts what it is asked and can slow, stall or corrupt it), a home node H — its own
// content store, a Puller, and a BlobServer on 127.0.0.1 that follows the Puller's downloads
// (peers::ArrivingBlobs) — and requester nodes, each a Puller on a store of its own with H as
// its one peer.
//
//   - three requesters pulling at once cost R one GET per blob: H fetched each once and sent it
//     to all of them; every requester's blobs came from H; H keeps them;
//   - H sends a blob while it arrives, and cuts the response short when its download fails (R
//     stalls; H's watchdog gives up);
//   - a blob H gets wrong from R is not kept by H, and the requester fetches it itself;
//   - a private image (R wants a token; only the requester has credentials): over https the
//     requester passes R's authorization on and H fetches with it; over plain http nothing is
//     passed on, H's fetch is refused, and the requester fetches every blob itself.
//
// No assertion depends on timing: R's blobs drip slowly only to make the requests overlap,
// and every count holds however they interleave.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "berth/base/cancel.h"
#include "berth/config/config.h"
#include "berth/peers/blob_server.h"
#include "berth/peers/membership.h"
#include "berth/pull/puller.h"
#include "berth/registry/observer.h"
#include "test/integration/pull_fixture.h"
#include "testing/fault_proxy.h"
#include "testing/http_wire.h"
#include "testing/net_util.h"
#include "testing/result_matchers.h"
#include "testing/test_pki.h"
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

// One node: a content store under its own directory, and a Puller on it.
struct Node {
  std::unique_ptr<content::Store> store;
  std::unique_ptr<peers::Membership> membership;
  std::unique_ptr<Puller> puller;
};

class PeersHomeTest : public PullFixture {
 protected:
  PeersHomeTest() : PullFixture("peers-home-test") {}

  void SetUp() override {
    PullFixture::SetUp();
    image_ = ThreeLayerImage(96 << 10);
    ASSERT_OK_AND_ASSIGN(registry_, TestRegistry::Start({.mode = registry_mode_}));
    imagegen::RegistryClientOptions client_options{.base_url = registry_->url()};
    if (registry_mode_ == berth::testing::TestRegistryMode::kTokenAuth) {
      client_options.username = registry_->username();
      client_options.password = registry_->password();
    }
    ASSERT_OK_AND_ASSIGN(auto client, imagegen::RegistryClient::Create(client_options));
    ASSERT_OK(imagegen::PushImage(*client, "demo", "v1", image_));
    ASSERT_OK_AND_ASSIGN(proxy_, FaultProxy::Start(registry_->host()));
  }

  void TearDown() override {
    if (server_) server_->Stop();
  }

  // A node under dir_/<name>, with `peer` (host:port) as its one static peer unless empty;
  // `adjust` changes its config.
  Result<Node> MakeNode(const std::string& name, const std::string& peer,
                        registry::RegistryObserver* observer,
                        const std::function<void(config::Config&)>& adjust = nullptr) {
    Node node;
    BERTH_ASSIGN_OR_RETURN(node.store, content::Store::Open({.root = dir_.Join(name) / "content",
                                                             .durability = Durability::kNone}));
    config::Config config = config::DefaultConfig();
    config.root = dir_.Join(name);
    config.pull.image_pull_progress_timeout = std::chrono::seconds(1);
    if (adjust) adjust(config);
    if (!peer.empty()) {
      config.peers.static_peers = {peer};
      BERTH_ASSIGN_OR_RETURN(node.membership, peers::Membership::Create({.static_peers = {peer}}));
      BERTH_RETURN_IF_ERROR(node.membership->Refresh());
    }
    node.puller = std::make_unique<Puller>(*node.store, *transport_, config, nullptr, observer,
                                           node.membership.get());
    return node;
  }

  // The home: a node without peers, serving its store and its downloads on 127.0.0.1 (every
  // blob of three nodes at once: 12 responses).
  // With `tls`, it serves https with a certificate of pki_.
  void StartHome(bool tls = false) {
    ASSERT_OK_AND_ASSIGN(home_, MakeNode("home", "", nullptr));
    peers::ServerTlsFiles files;
    if (tls) {
      ASSERT_OK_AND_ASSIGN(pki_, berth::testing::TestPki::Create());
      files = {.cert = pki_->server_cert_file().string(), .key = pki_->server_key_file().string()};
    }
    ASSERT_OK_AND_ASSIGN(server_,
                         peers::BlobServer::Start(*home_.store, {.address = "127.0.0.1:0",
                                                                 .max_concurrent_uploads = 16,
                                                                 .tls = files,
                                                                 .arriving = home_.puller.get()}));
  }

  // A requester with the registry's credentials in its config (the home has none), asking the
  // home over https (trusting pki_'s CA) when `tls`.
  Result<Node> MakeRequesterWithCredentials(bool tls) {
    return MakeNode("node", home_address(), &counts_, [&](config::Config& config) {
      config::AuthConfig& auth = config.registry.configs[proxy_->host()].auth;
      auth.username = registry_->username();
      auth.password = registry_->password();
      if (tls) config.peers.tls_ca = pki_->ca_cert_file().string();
    });
  }
  std::string home_address() const { return fmt::format("127.0.0.1:{}", server_->port()); }

  std::string reference() const { return proxy_->host() + "/demo:v1"; }

  std::vector<Digest> Blobs() const {
    std::vector<Digest> blobs = {image_.config.digest};
    for (const imagegen::Layer& layer : image_.layers) blobs.push_back(layer.blob.digest);
    return blobs;
  }
  uint64_t BlobBytes() const {
    uint64_t bytes = image_.config_json.size();
    for (const imagegen::Layer& layer : image_.layers) bytes += layer.blob.size;
    return bytes;
  }
  uint64_t RegistryGets(const Digest& digest) const {
    return proxy_->RequestCount("GET", "/blobs/" + digest.ToString());
  }

  berth::testing::TestRegistryMode registry_mode_ = berth::testing::TestRegistryMode::kPlainHttp;
  imagegen::Image image_;
  std::unique_ptr<TestRegistry> registry_;
  std::unique_ptr<berth::testing::TestPki> pki_;
  std::unique_ptr<FaultProxy> proxy_;
  Node home_;
  std::unique_ptr<peers::BlobServer> server_;
  PeerReports counts_;
};

TEST_F(PeersHomeTest, ThreeNodesPullingAtOnceCostTheRegistryOneDownloadPerBlob) {
  // R's blobs drip, so that the requesters' requests overlap H's downloads.
  ASSERT_OK(
      proxy_->AddRule({.method = "GET",
                       .target_contains = "/blobs/",
                       .action = FaultAction::SlowDrip(16 << 10, std::chrono::milliseconds(30))}));
  ASSERT_NO_FATAL_FAILURE(StartHome());
  std::vector<Node> requesters;
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(Node node, MakeNode(fmt::format("node-{}", i), home_address(), &counts_));
    requesters.push_back(std::move(node));
  }
  std::vector<Result<PulledImage>> pulled(requesters.size(),
                                          Fail(ErrorCode::kUnknown, "not pulled"));
  std::vector<std::thread> pulls;
  for (size_t i = 0; i < requesters.size(); ++i) {
    pulls.emplace_back([&, i] {
      pulled[i] = requesters[i].puller->Pull(reference(), Amd64(), {}, CancelToken::Never());
    });
  }
  for (std::thread& pull : pulls) pull.join();

  for (size_t i = 0; i < requesters.size(); ++i) {
    ASSERT_OK(pulled[i]) << "node " << i;
    EXPECT_EQ(pulled[i]->image_id, image_.config.digest);
    for (const Digest& blob : Blobs()) {
      EXPECT_TRUE(requesters[i].store->Contains(blob))
          << "node " << i << " lacks " << blob.ToString();
    }
  }
  for (const Digest& blob : Blobs()) {
    EXPECT_EQ(RegistryGets(blob), 1u) << blob.ToString() << "\n" << proxy_->DescribeRequests();
    EXPECT_TRUE(home_.store->Contains(blob)) << "the home did not keep " << blob.ToString();
  }
  EXPECT_EQ(counts_.peer_bytes(), 3 * BlobBytes());
  EXPECT_EQ(counts_.registry_bytes(), 0u) << ::testing::PrintToString(counts_.given_up());
}

TEST_F(PeersHomeTest, TheHomeSendsABlobAsItArrivesAndCutsTheResponseWhenItsDownloadFails) {
  const imagegen::Layer& layer = image_.layers[1];
  constexpr uint64_t kArrived = 20000;
  ASSERT_OK(proxy_->AddRule({.method = "GET",
                             .target_contains = layer.blob.digest.ToString(),
                             .action = FaultAction::StallAfterBytes(kArrived)}));
  ASSERT_NO_FATAL_FAILURE(StartHome());
  ASSERT_OK_AND_ASSIGN(UniqueFd socket, berth::testing::ConnectTcp("127.0.0.1", server_->port()));
  timeval timeout{.tv_sec = 20, .tv_usec = 0};  // a broken server fails the test, not hangs it
  ::setsockopt(socket.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ASSERT_OK(berth::testing::SendAll(
      socket.get(),
      fmt::format("GET /v2/demo/blobs/{}?ns={} HTTP/1.1\r\nHost: home\r\n\r\n",
                  layer.blob.digest.ToString(), berth::testing::UrlEncode(proxy_->host()))));
  berth::testing::SocketReader reader(socket.get());
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> head, reader.ReadHead());
  ASSERT_TRUE(head.has_value());
  ASSERT_OK_AND_ASSIGN(berth::testing::ResponseHead response,
                       berth::testing::ParseResponseHead(*head));
  EXPECT_EQ(response.status, 200);

  std::string body;
  bool stored_while_arriving = true;
  Result<void> read = berth::testing::ReadChunkedBody(reader, [&](std::string_view piece) {
    body += piece;
    if (body.size() == kArrived) stored_while_arriving = home_.store->Contains(layer.blob.digest);
    return Ok();
  });
  // What R sent before it stalled came through H at once; then H's watchdog gave up on R, the
  // download failed, and the response ended without its last chunk.
  EXPECT_EQ(body, layer.bytes.substr(0, kArrived));
  EXPECT_FALSE(stored_while_arriving);
  EXPECT_THAT(read, berth::testing::FailsWith(ErrorCode::kUnavailable));
  EXPECT_FALSE(home_.store->Contains(layer.blob.digest));
}

TEST_F(PeersHomeTest, ABlobTheHomeGetsWrongIsNotKeptAndTheRequesterFetchesItItself) {
  const Digest corrupted = image_.layers[0].blob.digest;
  ASSERT_OK(proxy_->AddRule({.method = "GET",
                             .target_contains = corrupted.ToString(),
                             .count = 1,
                             .action = FaultAction::CorruptByteAt(100)}));
  ASSERT_NO_FATAL_FAILURE(StartHome());
  ASSERT_OK_AND_ASSIGN(Node requester, MakeNode("node", home_address(), &counts_));
  ASSERT_OK_AND_ASSIGN(PulledImage pulled,
                       requester.puller->Pull(reference(), Amd64(), {}, CancelToken::Never()));
  EXPECT_EQ(pulled.image_id, image_.config.digest);
  for (const Digest& blob : Blobs())
    EXPECT_TRUE(requester.store->Contains(blob)) << blob.ToString();
  EXPECT_FALSE(home_.store->Contains(corrupted)) << "the home kept bytes that do not verify";
  // H's GET (corrupted), then the requester's own, of the whole blob: what H sent does not
  // verify.
  EXPECT_EQ(RegistryGets(corrupted), 2u) << proxy_->DescribeRequests();
  EXPECT_THAT(counts_.given_up(), ::testing::Contains(home_address() + " bad_bytes"));
}

// A private image: the registry wants a token, and only the requester has credentials.
class PeersHomePrivateTest : public PeersHomeTest {
 protected:
  PeersHomePrivateTest() { registry_mode_ = berth::testing::TestRegistryMode::kTokenAuth; }
};

TEST_F(PeersHomePrivateTest, OverTlsTheHomeFetchesWithTheRequestersAuthorization) {
  ASSERT_NO_FATAL_FAILURE(StartHome(/*tls=*/true));
  ASSERT_OK_AND_ASSIGN(Node requester, MakeRequesterWithCredentials(/*tls=*/true));
  ASSERT_OK_AND_ASSIGN(PulledImage pulled,
                       requester.puller->Pull(reference(), Amd64(), {}, CancelToken::Never()));
  EXPECT_EQ(pulled.image_id, image_.config.digest);
  for (const Digest& blob : Blobs()) {
    EXPECT_TRUE(home_.store->Contains(blob)) << "the home did not fetch " << blob.ToString();
    EXPECT_EQ(RegistryGets(blob), 1u)  // the home's, with the requester's token
        << blob.ToString() << "\n"
        << proxy_->DescribeRequests();
  }
  EXPECT_EQ(counts_.peer_bytes(), BlobBytes());
  EXPECT_EQ(counts_.registry_bytes(), 0u) << ::testing::PrintToString(counts_.given_up());
}

TEST_F(PeersHomePrivateTest, OverPlainHttpNoAuthorizationIsPassedOnAndTheRequesterFetchesItself) {
  ASSERT_NO_FATAL_FAILURE(StartHome(/*tls=*/false));
  ASSERT_OK_AND_ASSIGN(Node requester, MakeRequesterWithCredentials(/*tls=*/false));
  ASSERT_OK_AND_ASSIGN(PulledImage pulled,
                       requester.puller->Pull(reference(), Amd64(), {}, CancelToken::Never()));
  EXPECT_EQ(pulled.image_id, image_.config.digest);
  for (const Digest& blob : Blobs()) {
    EXPECT_FALSE(home_.store->Contains(blob)) << "the home fetched without credentials";
  }
  // Every blob: the home's fetch was refused, the requester fetched it itself.
  EXPECT_EQ(counts_.peer_bytes(), 0u);
  EXPECT_EQ(counts_.registry_bytes(), BlobBytes());
}

}  // namespace
}  // namespace berth::pull
