// Garbage collection end to end (issue 6): the berth CLI in embedded mode on a real root, a real
// registry pulled through a FaultProxy. A pull that fails leaves content no name references (with
// pull.resume_window = "0" nothing keeps it); `berth gc` frees exactly that — the bytes it
// reports are what `du` sees disappear — and keeps the layer another image shares.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "berth/base/file_util.h"
#include "berth/snapshot/overlay_snapshotter.h"
#include "testing/fault_proxy.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"
#include "testing/test_registry.h"
#include "tools/imagegen/file_tree.h"
#include "tools/imagegen/image.h"
#include "tools/imagegen/layer.h"
#include "tools/imagegen/push.h"
#include "tools/imagegen/registry_client.h"

namespace berth {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using berth::testing::CommandResult;
using berth::testing::FaultAction;
using berth::testing::FaultProxy;
using berth::testing::TestRegistry;

imagegen::Layer FileLayer(const std::string& path, size_t bytes, char fill) {
  imagegen::FileTree tree;
  tree.AddFile(path, std::string(bytes, fill));
  auto layer = imagegen::BuildLayer(tree);
  EXPECT_TRUE(layer) << layer.error().ToString();
  return std::move(*layer);
}

imagegen::Image MakeImage(std::vector<imagegen::Layer> layers) {
  auto image = imagegen::AssembleImage({}, std::move(layers));
  EXPECT_TRUE(image) << image.error().ToString();
  return std::move(*image);
}

class GcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = berth::testing::TempDir::Create("gc-e2e");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
    auto registry = TestRegistry::Start({.log_level = "warn"});
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = std::move(*registry);
    auto proxy = FaultProxy::Start(registry_->host());
    ASSERT_TRUE(proxy) << proxy.error().ToString();
    proxy_ = std::move(*proxy);
    const std::string snapshotter =
        snapshot::OverlaySnapshotter::KernelSupportsOverlay() ? "overlayfs" : "native";
    std::ofstream(dir_->path() / "config.toml")
        << "[pull]\nsnapshotter = \"" << snapshotter << "\"\nresume_window = \"0\"\n";
  }

  void Push(const std::string& tag, const imagegen::Image& image) {
    auto client = imagegen::RegistryClient::Create({.base_url = registry_->url()});
    ASSERT_TRUE(client) << client.error().ToString();
    ASSERT_TRUE(imagegen::PushImage(**client, "test/gc", tag, image));
  }

  CommandResult Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {BERTH_CLI_PATH,
                                     "--config",
                                     (dir_->path() / "config.toml").string(),
                                     "--root",
                                     root().string(),
                                     "--address",
                                     "unix://" + (dir_->path() / "nobody.sock").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto result = berth::testing::RunCommand(argv, dir_->path());
    EXPECT_TRUE(result) << result.error().ToString();
    return result ? *result : CommandResult{};
  }

  // Bytes allocated under the content store and the snapshots, as `du -B1 -s` counts them.
  int64_t DiskBytes() {
    auto du =
        berth::testing::RunCommand({"/usr/bin/du", "-s", "-B1", "-c", (root() / "content").string(),
                                    (root() / "snapshots").string()},
                                   dir_->path());
    EXPECT_TRUE(du && du->exit_code == 0);
    if (!du) return -1;
    // The last line is "<total>\ttotal".
    std::string out = du->out;
    size_t last = out.rfind('\n', out.size() - 2);
    return std::stoll(out.substr(last == std::string::npos ? 0 : last + 1));
  }

  fs::path root() const { return dir_->path() / "root"; }
  std::string Ref(const std::string& tag) const { return proxy_->host() + "/test/gc:" + tag; }

  std::optional<berth::testing::TempDir> dir_;
  std::unique_ptr<TestRegistry> registry_;
  std::unique_ptr<FaultProxy> proxy_;
};

TEST_F(GcTest, FreesExactlyWhatNothingReferencesAndKeepsSharedLayers) {
  imagegen::Layer base = FileLayer("base.bin", 300 << 10, 'b');
  imagegen::Image kept = MakeImage({base, FileLayer("kept.bin", 200 << 10, 'k')});
  imagegen::Image failed = MakeImage(
      {base, FileLayer("mid.bin", 400 << 10, 'm'), FileLayer("never.bin", 100 << 10, 'n')});
  Push("kept", kept);
  Push("failed", failed);
  CommandResult pulled = Cli({"pull", Ref("kept")});
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err;

  // The failed image's last layer never arrives: its manifest, config and middle layer are
  // fetched (and unpacked), then nothing names them. (The refusal comes late, so the middle
  // layer is whole by then rather than cancelled.)
  ASSERT_TRUE(
      proxy_->AddRule({.method = "GET",
                       .target_contains = failed.layers[2].blob.digest.ToString(),
                       .action = {.delay = std::chrono::seconds(2), .respond_status = 404}}));
  CommandResult refused = Cli({"pull", Ref("failed")});
  ASSERT_NE(refused.exit_code, 0);

  CommandResult dry = Cli({"gc", "--dry-run", "--json"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  json would = json::parse(dry.out, nullptr, false);
  ASSERT_TRUE(would.is_object()) << dry.out;

  const int64_t before = DiskBytes();
  CommandResult collected = Cli({"gc", "--json"});
  ASSERT_EQ(collected.exit_code, 0) << collected.err;
  const int64_t after = DiskBytes();
  json report = json::parse(collected.out, nullptr, false);
  ASSERT_TRUE(report.is_object()) << collected.out;
  EXPECT_EQ(report["removed"], would["removed"]) << "the dry run listed something else";

  // What went: the failed image's manifest, config and middle layer blob, and its middle
  // layer's snapshot. The shared base (blob and snapshot) stays.
  EXPECT_EQ(report["blobs"]["count"], 3) << collected.out;
  EXPECT_EQ(report["snapshots"]["count"], 1) << collected.out;
  const std::string removed = report["removed"].dump();
  EXPECT_THAT(removed, ::testing::HasSubstr(failed.layers[1].blob.digest.ToString()));
  EXPECT_THAT(removed, ::testing::Not(::testing::HasSubstr(base.blob.digest.ToString())));
  // du sees what gc reports, up to the directory blocks beside the measured bytes: a snapshot's
  // own directory and overlay work directory (Usage counts its layer directory), an ingest's
  // directory and its `ref` and `expected` files (an ingest counts the bytes received).
  const int64_t freed = report["bytes"].get<int64_t>();
  const int64_t overhead = 4096 * (2 * report["snapshots"]["count"].get<int64_t>() +
                                   3 * report["ingests"]["count"].get<int64_t>());
  EXPECT_GT(freed, 400 << 10);
  EXPECT_GE(before - after, freed) << collected.out;
  EXPECT_LE(before - after, freed + overhead) << collected.out;

  // The kept image is whole, and nothing more is garbage.
  CommandResult check = Cli({"check", "--verify", "--json"});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  CommandResult listed = Cli({"images", "--json"});
  ASSERT_EQ(listed.exit_code, 0);
  json images = json::parse(listed.out, nullptr, false);
  ASSERT_TRUE(images.is_array() && images.size() == 1) << listed.out;
  EXPECT_EQ(images[0]["id"], kept.config.digest.ToString());
}

}  // namespace
}  // namespace berth
