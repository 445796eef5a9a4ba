// berthd's peer endpoint end to end (issue 17, the serving side): the built berthd, with
// peers.listen on loopback, pulls an image from a real registry (docker-registry) over CRI; then
// independent clients take the image from berthd's peer endpoint by digest, as another node
// would: berth's own puller (registry client, content store) pointed at the endpoint as a
// registry, and curl for a Range request and a manifest's headers. Bad [peers] settings stop
// berthd at start, naming the key.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "berth/base/file_util.h"
#include "proto/runtime/v1/api.grpc.pb.h"
#include "test/integration/pull_fixture.h"
#include "testing/berthd_process.h"
#include "testing/child_process.h"
#include "testing/http_fetch.h"
#include "testing/net_util.h"
#include "testing/result_matchers.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"
#include "testing/test_images.h"
#include "testing/test_registry.h"

namespace berth {
namespace {

using berth::testing::ChildProcess;
using berth::testing::TestRegistry;
using ::testing::HasSubstr;

namespace v1 = ::runtime::v1;

constexpr char kCurl[] = "/usr/bin/curl";

class PeersEndToEndTest : public pull::PullFixture {
 protected:
  PeersEndToEndTest() : pull::PullFixture("peers-e2e") {}

  static void SetUpTestSuite() {
    Result<void> ready = StartRegistryWithImage();
    ASSERT_TRUE(ready) << ready.error().ToString();
  }
  // A registry on loopback holding test image "a" as test/img:a.
  static Result<void> StartRegistryWithImage() {
    BERTH_ASSIGN_OR_RETURN(std::unique_ptr<TestRegistry> registry,
                           TestRegistry::Start({.log_level = "warn"}));
    BERTH_ASSIGN_OR_RETURN(imagegen::Image image, service::testing::MakeTestImage("a"));
    BERTH_RETURN_IF_ERROR(service::testing::PushTestImage(registry->url(), "test/img", "a", image));
    registry_ = registry.release();
    image_ = new imagegen::Image(std::move(image));
    return Ok();
  }
  static void TearDownTestSuite() {
    delete registry_;
    delete image_;
  }

  void SetUp() override {
    pull::PullFixture::SetUp();
    ASSERT_OK_AND_ASSIGN(daemon_dir_, berth::testing::TempDir::Create("peers-berthd"));
    ASSERT_OK_AND_ASSIGN(peer_port_, berth::testing::FreeLoopbackPort());
    ASSERT_OK_AND_ASSIGN(metrics_port_, berth::testing::FreeLoopbackPort());
    std::ofstream(daemon_dir_.Join("config.toml")) << fmt::format(
        "metrics_address = \"127.0.0.1:{}\"\n[pull]\nsnapshotter = \"native\"\n"
        "[peers]\nlisten = \"127.0.0.1:{}\"\nmax_upload_rate = \"64MiB/s\"\n",
        metrics_port_, peer_port_);
    ASSERT_OK_AND_ASSIGN(daemon_, StartBerthd(daemon_dir_, daemon_dir_.Join("config.toml"),
                                              berth::testing::BerthdStartWait::kSocketsAnswer));
    ASSERT_OK(berth::testing::WaitForTcp("127.0.0.1", peer_port_, std::chrono::seconds(10)));
  }

  static Result<std::unique_ptr<ChildProcess>> StartBerthd(const berth::testing::TempDir& dir,
                                                           const std::filesystem::path& config,
                                                           berth::testing::BerthdStartWait wait,
                                                           const std::string& sub = "") {
    const std::filesystem::path base = sub.empty() ? dir.path() : dir.Join(sub);
    return berth::testing::StartBerthd({.config_file = config,
                                        .root = base / "root",
                                        .state = base / "state",
                                        .socket = base / "run/berth.sock",
                                        .log_file = base / "berthd.log",
                                        .wait = wait});
  }

  // berthd pulls the image from the registry over CRI.
  void PullIntoBerthd() {
    auto channel = grpc::CreateChannel("unix:" + daemon_dir_.Join("run/berth.sock").string(),
                                       grpc::InsecureChannelCredentials());
    auto stub = v1::ImageService::NewStub(channel);
    v1::PullImageRequest request;
    request.mutable_image()->set_image(registry_->host() + "/test/img:a");
    v1::PullImageResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    grpc::Status status = stub->PullImage(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message() << "\n" << daemon_->ReadLog();
  }

  std::string PeerHost() const { return fmt::format("127.0.0.1:{}", peer_port_); }
  std::string PeerUrl(std::string_view path) const {
    return fmt::format("http://{}{}", PeerHost(), path);
  }

  static inline TestRegistry* registry_ = nullptr;
  static inline imagegen::Image* image_ = nullptr;
  berth::testing::TempDir daemon_dir_;
  uint16_t peer_port_ = 0;
  uint16_t metrics_port_ = 0;
  std::unique_ptr<ChildProcess> daemon_;
};

TEST_F(PeersEndToEndTest, BerthsOwnPullerTakesTheImageFromThePeerEndpoint) {
  // Nothing pulled yet: the peer has nothing to give.
  ASSERT_OK_AND_ASSIGN(
      berth::testing::HttpFetchResponse before,
      berth::testing::HttpFetch({.url = PeerUrl(fmt::format("/v2/test/img/manifests/{}",
                                                            image_->manifest.digest.ToString()))}));
  EXPECT_EQ(before.status, 404);
  ASSERT_NO_FATAL_FAILURE(PullIntoBerthd());

  // A second, independent node: its own content store, berth's registry client, the peer
  // endpoint as its registry (a loopback host: https first, then plain http, as containerd).
  const std::string reference =
      fmt::format("{}/test/img@{}", PeerHost(), image_->manifest.digest.ToString());
  ASSERT_OK_AND_ASSIGN(pull::PulledImage pulled, Pull(reference));
  EXPECT_EQ(pulled.manifest.digest, image_->manifest.digest);
  EXPECT_EQ(pulled.image_id, image_->config.digest);
  ASSERT_EQ(pulled.parsed_manifest.layers.size(), image_->layers.size());
  // Every blob is in the second store, verified by the puller as it arrived.
  EXPECT_TRUE(store_->Contains(image_->manifest.digest));
  EXPECT_TRUE(store_->Contains(image_->config.digest));
  int64_t layer_bytes = 0;
  for (const auto& layer : image_->layers) {
    EXPECT_TRUE(store_->Contains(layer.blob.digest)) << layer.blob.digest.ToString();
    layer_bytes += layer.blob.size;
  }

  // berthd counted what it served.
  ASSERT_OK_AND_ASSIGN(berth::testing::HttpFetchResponse scraped,
                       berth::testing::HttpFetch(
                           {.url = fmt::format("http://127.0.0.1:{}/v1/metrics", metrics_port_)}));
  EXPECT_THAT(scraped.body,
              HasSubstr(fmt::format("berth_peer_served_bytes_total{{kind=\"blob\"}} {}\n",
                                    layer_bytes + image_->config.size)));
  EXPECT_THAT(scraped.body, HasSubstr("berth_peer_requests_total{method=\"GET\",kind=\"manifest\","
                                      "status=\"200\"} 1\n"));
  EXPECT_THAT(scraped.body, HasSubstr("berth_peer_requests_total{method=\"GET\",kind=\"manifest\","
                                      "status=\"404\"} 1\n"));
}

TEST_F(PeersEndToEndTest, CurlTakesARangeOfALayerAndAManifestsHeaders) {
  ASSERT_NO_FATAL_FAILURE(PullIntoBerthd());
  const imagegen::Layer& layer = image_->layers.front();
  ASSERT_FALSE(layer.bytes.empty());
  ASSERT_GT(layer.blob.size, 100);
  const std::filesystem::path body = daemon_dir_.Join("range.bin");
  ASSERT_OK_AND_ASSIGN(berth::testing::CommandResult ranged,
                       berth::testing::RunCommand(
                           {kCurl, "-sS", "-D", "-", "-o", body.string(), "-r", "10-99", "--",
                            PeerUrl(fmt::format("/v2/test/img/blobs/{}?ns={}",
                                                layer.blob.digest.ToString(), registry_->host()))},
                           daemon_dir_.path()));
  ASSERT_EQ(ranged.exit_code, 0) << ranged.err;
  EXPECT_THAT(ranged.out, HasSubstr("HTTP/1.1 206"));
  EXPECT_THAT(ranged.out, HasSubstr(fmt::format("Content-Range: bytes 10-99/{}", layer.blob.size)));
  ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFile(body, 1 << 20));
  EXPECT_TRUE(bytes == layer.bytes.substr(10, 90)) << "the range's bytes differ";

  ASSERT_OK_AND_ASSIGN(
      berth::testing::CommandResult head,
      berth::testing::RunCommand(
          {kCurl, "-sS", "-I", "--",
           PeerUrl(fmt::format("/v2/test/img/manifests/{}", image_->manifest.digest.ToString()))},
          daemon_dir_.path()));
  ASSERT_EQ(head.exit_code, 0) << head.err;
  EXPECT_THAT(head.out, HasSubstr("HTTP/1.1 200"));
  EXPECT_THAT(head.out, HasSubstr("Content-Type: " + image_->manifest.media_type));
  EXPECT_THAT(head.out, HasSubstr("Docker-Content-Digest: " + image_->manifest.digest.ToString()));
  EXPECT_THAT(head.out, HasSubstr(fmt::format("Content-Length: {}", image_->manifest.size)));

  // A tag is not served.
  ASSERT_OK_AND_ASSIGN(berth::testing::HttpFetchResponse tag,
                       berth::testing::HttpFetch({.url = PeerUrl("/v2/test/img/manifests/a")}));
  EXPECT_EQ(tag.status, 404);
  EXPECT_THAT(tag.body, HasSubstr("MANIFEST_UNKNOWN"));
}

TEST_F(PeersEndToEndTest, BadPeerSettingsStopBerthdAtStartNamingTheKey) {
  struct Case {
    std::string peers;
    std::string key;
  };
  // The port berthd already serves on is taken; a certificate that does not exist.
  for (const Case& c :
       std::vector<Case>{{fmt::format("listen = \"127.0.0.1:{}\"\n", peer_port_), "peers.listen"},
                         {"listen = \"127.0.0.1:0\"\ntls_cert = \"/nonexistent/cert.pem\"\n"
                          "tls_key = \"/nonexistent/key.pem\"\n",
                          "peers.tls_cert"}}) {
    const std::filesystem::path config = daemon_dir_.Join("bad.toml");
    std::ofstream(config) << "[pull]\nsnapshotter = \"native\"\n[peers]\n" << c.peers;
    std::filesystem::remove_all(daemon_dir_.Join("second"));
    std::filesystem::create_directories(daemon_dir_.Join("second"));
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<ChildProcess> refused,
        StartBerthd(daemon_dir_, config, berth::testing::BerthdStartWait::kNone, "second"));
    ASSERT_OK_AND_ASSIGN(berth::testing::ExitStatus status,
                         refused->WaitForExit(std::chrono::seconds(20)));
    EXPECT_EQ(status.exit_code, 1) << refused->ReadLog();
    EXPECT_THAT(refused->ReadLog(), HasSubstr(c.key));
    EXPECT_FALSE(std::filesystem::exists(daemon_dir_.Join("second/run/berth.sock")))
        << "served CRI anyway";
  }
}

}  // namespace
}  // namespace berth
