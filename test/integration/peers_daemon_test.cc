// berthd pulling through a peer end to end: a berthd whose config names one static peer (a second
// Distribution registry holding some of the image's blobs, as a peer would) pulls an image on
// `berth pull` over CRI; the peer serves the blobs it has (GET …?ns=<origin>), the origin the
// rest, and berthd's metrics count the bytes by source and the peer given up on for the others.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "berth/snapshot/overlay_snapshotter.h"
#include "testing/berthd_process.h"
#include "testing/http_fetch.h"
#include "testing/net_util.h"
#include "testing/result_matchers.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"
#include "testing/test_images.h"
#include "testing/test_registry.h"
#include "tools/imagegen/registry_client.h"

namespace berth {
namespace {

using berth::testing::TempDir;
using berth::testing::TestRegistry;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(PeersDaemonTest, BerthdPullsThePeersBlobsFromThePeerAndTheRestFromTheRegistry) {
  ASSERT_OK_AND_ASSIGN(auto origin, TestRegistry::Start({.log_level = "info"}));
  ASSERT_OK_AND_ASSIGN(auto peer, TestRegistry::Start({.log_level = "info"}));
  ASSERT_OK_AND_ASSIGN(imagegen::Image image, service::testing::MakeTestImage("p"));
  ASSERT_OK(service::testing::PushTestImage(origin->url(), "test/img", "v1", image));
  // The peer holds the config and the base layer.
  ASSERT_OK_AND_ASSIGN(auto peer_client,
                       imagegen::RegistryClient::Create({.base_url = peer->url()}));
  ASSERT_OK(peer_client->PushBlob("test/img", image.config.digest, image.config_json));
  ASSERT_OK(peer_client->PushBlob("test/img", image.layers[0].blob.digest, image.layers[0].bytes));

  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("peers-daemon"));
  ASSERT_OK_AND_ASSIGN(uint16_t metrics_port, berth::testing::FreeLoopbackPort());
  const std::string config_file = dir.Join("config.toml").string();
  std::ofstream(config_file) << fmt::format(
      "root = \"{}\"\nmetrics_address = \"127.0.0.1:{}\"\n"
      "[pull]\nsnapshotter = \"{}\"\nimage_pull_progress_timeout = \"5s\"\n"
      "[peers]\nstatic = [\"{}\"]\n",
      dir.Join("root").string(), metrics_port,
      snapshot::OverlaySnapshotter::KernelSupportsOverlay() ? "overlayfs" : "native", peer->host());
  ASSERT_OK_AND_ASSIGN(auto daemon,
                       berth::testing::StartBerthd({.config_file = config_file,
                                                    .state = dir.Join("state"),
                                                    .socket = dir.Join("berth.sock"),
                                                    .log_file = dir.Join("berthd.log")}));

  const std::string reference = origin->host() + "/test/img:v1";
  ASSERT_OK_AND_ASSIGN(
      berth::testing::CommandResult pulled,
      berth::testing::RunCommand({BERTH_CLI_PATH, "--config", config_file, "--address",
                                  "unix://" + dir.Join("berth.sock").string(), "pull", reference},
                                 dir.path()));
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err << daemon->ReadLog();
  EXPECT_EQ(pulled.out, image.config.digest.ToString() + "\n");

  std::string ns = origin->host();
  ns.replace(ns.find(':'), 1, "%3A");
  const std::string peer_log = peer->ReadLog();
  for (const Digest& digest : {image.config.digest, image.layers[0].blob.digest}) {
    EXPECT_THAT(peer_log, HasSubstr(fmt::format("GET /v2/test/img/blobs/{}?ns={} ", digest, ns)));
    EXPECT_THAT(origin->ReadLog(),
                Not(HasSubstr(fmt::format("GET /v2/test/img/blobs/{} ", digest))));
  }
  EXPECT_THAT(peer_log, Not(HasSubstr("/manifests/")));
  EXPECT_THAT(daemon->ReadLog(), HasSubstr("peers.members count=1"));

  ASSERT_OK_AND_ASSIGN(berth::testing::HttpFetchResponse metrics,
                       berth::testing::HttpFetch(
                           {.url = fmt::format("http://127.0.0.1:{}/v1/metrics", metrics_port)}));
  const uint64_t peer_bytes =
      image.config_json.size() + static_cast<uint64_t>(image.layers[0].blob.size);
  EXPECT_THAT(
      metrics.body,
      HasSubstr(fmt::format("berth_blob_fetched_bytes_total{{source=\"peer\"}} {}\n", peer_bytes)));
  EXPECT_THAT(metrics.body,
              HasSubstr(fmt::format("berth_peer_fetched_bytes_total{{peer=\"{}\"}} {}\n",
                                    peer->host(), peer_bytes)));
  EXPECT_THAT(
      metrics.body,
      HasSubstr(fmt::format("berth_peer_given_up_total{{peer=\"{}\",reason=\"not_found\"}} {}\n",
                            peer->host(), image.layers.size() - 1)));
  EXPECT_TRUE(daemon->Stop(std::chrono::seconds(20)).success()) << daemon->ReadLog();
}

}  // namespace
}  // namespace berth
