// Crash safety end to end (issue 6): the built berthd, killed with SIGKILL at a random moment of a
// pull, restarted, checked, and pulled again; and content or snapshots removed behind berthd's
// back. Real registry (behind a FaultProxy that slows blob downloads, so a pull lasts long enough
// to be interrupted anywhere), real snapshots, the real CLI (`berth check`, `berth mount`).
//
// The crash loop runs BERTH_CRASH_ITERATIONS iterations (environment; default 50, 5 in the
// sanitizer build) and prints how many blob bytes were downloaded twice across all resumes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "berth/base/file_util.h"
#include "berth/snapshot/erofs_snapshotter.h"
#include "berth/snapshot/overlay_snapshotter.h"
#include "testing/berthd_process.h"
#include "testing/child_process.h"
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
using berth::testing::ChildProcess;
using berth::testing::CommandResult;
using berth::testing::FaultAction;
using berth::testing::FaultProxy;
using berth::testing::TestRegistry;
using ::testing::HasSubstr;

constexpr size_t kLayers = 4;
constexpr size_t kLayerBytes = size_t{512} << 10;

// Incompressible bytes, the same for a seed.
std::string RandomBytes(size_t bytes, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string data(bytes, '\0');
  for (size_t i = 0; i < bytes; i += sizeof(uint64_t)) {
    uint64_t value = random();
    std::memcpy(data.data() + i, &value, std::min(sizeof(value), bytes - i));
  }
  return data;
}

std::string FileContent(size_t layer) { return RandomBytes(kLayerBytes, 1000 + layer); }

Result<imagegen::Image> MakeImage() {
  std::vector<imagegen::Layer> layers;
  for (size_t i = 0; i < kLayers; ++i) {
    imagegen::FileTree tree;
    tree.AddDirectory("data").AddFile("data/layer" + std::to_string(i) + ".bin", FileContent(i));
    BERTH_ASSIGN_OR_RETURN(imagegen::Layer layer, imagegen::BuildLayer(tree));
    layers.push_back(std::move(layer));
  }
  imagegen::ImageConfig config;
  config.cmd = {"/data/layer0.bin"};
  return imagegen::AssembleImage(config, std::move(layers));
}

#ifndef BERTH_CRASH_DEFAULT_ITERATIONS
#define BERTH_CRASH_DEFAULT_ITERATIONS 50
#endif

class CrashTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto registry = TestRegistry::Start({.log_level = "warn"});
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = registry->release();
    auto image = MakeImage();
    ASSERT_TRUE(image) << image.error().ToString();
    image_ = new imagegen::Image(std::move(*image));
    auto client = imagegen::RegistryClient::Create({.base_url = registry_->url()});
    ASSERT_TRUE(client) << client.error().ToString();
    ASSERT_TRUE(imagegen::PushImage(**client, "test/crash", "v1", *image_));
    for (const imagegen::Layer& layer : image_->layers) {
      image_blob_bytes_ += static_cast<uint64_t>(layer.blob.size);
    }
    image_blob_bytes_ += static_cast<uint64_t>(image_->config.size);
  }
  static void TearDownTestSuite() {
    delete image_;
    delete registry_;
  }

  void SetUp() override {
    auto dir = berth::testing::TempDir::Create("crash");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
    auto proxy = FaultProxy::Start(registry_->host());
    ASSERT_TRUE(proxy) << proxy.error().ToString();
    proxy_ = std::move(*proxy);
    // ~1.6 MB/s per blob download: a pull of the 2 MiB image takes about half a second.
    ASSERT_TRUE(proxy_->AddRule(
        {.method = "GET",
         .target_contains = "/blobs/",
         .action = FaultAction::SlowDrip(32 << 10, std::chrono::milliseconds(20))}));
    WriteConfig(snapshot::OverlaySnapshotter::KernelSupportsOverlay() ? "overlayfs" : "native");
  }

  void WriteConfig(std::string_view snapshotter) {
    std::ofstream(config_file()) << "[pull]\nsnapshotter = \"" << snapshotter
                                 << "\"\nsync = \"none\"\n"
                                 << "[registry.mirrors.\"" << registry_->host() << "\"]\n"
                                 << "endpoint = [\"http://" << proxy_->host() << "\"]\n";
  }

  void TearDown() override {
    if (daemon_) ::kill(daemon_->pid(), SIGKILL);
    daemon_.reset();
  }

  fs::path config_file() const { return dir_->path() / "config.toml"; }
  std::string socket() const { return (dir_->path() / "run" / "berth.sock").string(); }
  std::string reference() const { return registry_->host() + "/test/crash:v1"; }

  void StartDaemon(const fs::path& root) {
    auto daemon = berth::testing::StartBerthd({.config_file = config_file(),
                                               .root = root,
                                               .state = dir_->path() / "state",
                                               .socket = socket(),
                                               .log_file = dir_->path() / "berthd.log",
                                               .start_timeout = std::chrono::seconds(30)});
    ASSERT_TRUE(daemon) << daemon.error().ToString();
    daemon_ = std::move(*daemon);
  }

  void StopDaemon() {
    berth::testing::ExitStatus status = daemon_->Stop(std::chrono::seconds(20));
    EXPECT_TRUE(status.success()) << status.ToString() << "\n" << daemon_->ReadLog();
    daemon_.reset();
  }

  void KillDaemon() {
    ::kill(daemon_->pid(), SIGKILL);
    auto status = daemon_->WaitForExit(std::chrono::seconds(20));
    EXPECT_TRUE(status) << "berthd did not die";
    daemon_.reset();
  }

  // The CLI: through berthd (`root` empty) or on `root` in embedded mode.
  CommandResult Cli(std::vector<std::string> args, const fs::path& root = {}) {
    std::vector<std::string> argv = {BERTH_CLI_PATH, "--config", config_file().string()};
    if (root.empty()) {
      argv.insert(argv.end(), {"--address", "unix://" + socket()});
    } else {
      argv.insert(argv.end(), {"--root", root.string(), "--address",
                               "unix://" + (dir_->path() / "nobody.sock").string()});
    }
    argv.insert(argv.end(), args.begin(), args.end());
    auto result = berth::testing::RunCommand(argv, dir_->path());
    EXPECT_TRUE(result) << result.error().ToString();
    return result ? *result : CommandResult{};
  }

  // IDs of the images berthd reports.
  std::vector<std::string> ListedIds() {
    CommandResult listed = Cli({"images", "--json"});
    EXPECT_EQ(listed.exit_code, 0) << listed.err;
    std::vector<std::string> ids;
    json images = json::parse(listed.out, nullptr, false);
    if (!images.is_array()) return ids;
    for (const json& image : images) ids.push_back(image.value("id", ""));
    return ids;
  }

  // `berth check --verify` must find nothing: through berthd (`root` empty) or on the root.
  void ExpectCheckClean(const fs::path& root, const std::string& when) {
    CommandResult check = Cli({"check", "--verify", "--json"}, root);
    EXPECT_EQ(check.exit_code, 0) << when << ":\n" << check.out << check.err;
    json report = json::parse(check.out, nullptr, false);
    EXPECT_TRUE(report.is_object() && report.value("clean", false))
        << when << ": " << check.out << check.err;
  }

  // Mounts the image's rootfs with the CLI and compares every file with what was pushed.
  void ExpectRootfs(const fs::path& root, const std::string& when) {
    const fs::path target = dir_->path() / "mnt";
    fs::create_directories(target);
    CommandResult mounted = Cli({"mount", reference(), target.string()}, root);
    ASSERT_EQ(mounted.exit_code, 0) << when << ": " << mounted.err;
    for (size_t i = 0; i < kLayers; ++i) {
      auto content = ReadFile(target / "data" / ("layer" + std::to_string(i) + ".bin"));
      EXPECT_TRUE(content && *content == FileContent(i)) << when << ": layer " << i;
    }
    CommandResult unmounted = Cli({"unmount", target.string()}, root);
    EXPECT_EQ(unmounted.exit_code, 0) << when << ": " << unmounted.err;
  }

  // Starts berthd on `root`, starts a pull through it, and kills berthd once the registry has
  // sent at least `bytes` of blob bodies for this pull. Returns how many it sent.
  uint64_t PullAndKillAfter(const fs::path& root, uint64_t bytes) {
    StartDaemon(root);
    const uint64_t at_start = proxy_->BodyBytesSent("GET", "/blobs/");
    auto client =
        ChildProcess::Start({.argv = {BERTH_CLI_PATH, "--config", config_file().string(),
                                      "--address", "unix://" + socket(), "pull", reference()},
                             .log_file = dir_->path() / "client.log"});
    EXPECT_TRUE(client) << client.error().ToString();
    auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (proxy_->BodyBytesSent("GET", "/blobs/") - at_start < bytes &&
           std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    KillDaemon();
    if (client) (void)(*client)->WaitForExit(std::chrono::seconds(30));
    // The proxy may still be finishing the responses to the dead connections.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return proxy_->BodyBytesSent("GET", "/blobs/") - at_start;
  }

  // The kill -9 loop: berthd is killed at a random point of a pull, restarted, checked (the
  // image is named whole or not at all, `berth check` is clean), and the pull is repeated and
  // resumes; the rootfs then matches what was pushed. BERTH_CRASH_ITERATIONS overrides
  // `iterations`.
  void KillLoop(int iterations) {
    if (const char* text = std::getenv("BERTH_CRASH_ITERATIONS")) iterations = std::atoi(text);
    ASSERT_GT(iterations, 0);
    const std::string image_id = image_->config.digest.ToString();

    // How long one whole pull takes here, so kills can land uniformly over it.
    const fs::path first_root = dir_->path() / "root-measure";
    StartDaemon(first_root);
    auto started = std::chrono::steady_clock::now();
    CommandResult pulled = Cli({"pull", reference()});
    auto pull_time = std::chrono::steady_clock::now() - started;
    ASSERT_EQ(pulled.exit_code, 0) << pulled.err << daemon_->ReadLog();
    StopDaemon();
    const auto pull_us = std::chrono::duration_cast<std::chrono::microseconds>(pull_time).count();

    std::mt19937_64 random(std::random_device{}());
    std::uniform_int_distribution<int64_t> kill_at(0, pull_us);
    uint64_t redownloaded = 0;
    int complete_before_kill = 0;
    int failures = 0;
    for (int i = 0; i < iterations; ++i) {
      const std::string when = "iteration " + std::to_string(i);
      const fs::path root = dir_->path() / ("root-" + std::to_string(i));
      StartDaemon(root);
      const uint64_t bytes_at_start = proxy_->BodyBytesSent("GET", "/blobs/");
      // The pull runs in its own client process; berthd dies under it.
      auto client =
          ChildProcess::Start({.argv = {BERTH_CLI_PATH, "--config", config_file().string(),
                                        "--address", "unix://" + socket(), "pull", reference()},
                               .log_file = dir_->path() / "client.log"});
      ASSERT_TRUE(client) << client.error().ToString();
      std::this_thread::sleep_for(std::chrono::microseconds(kill_at(random)));
      KillDaemon();
      (void)(*client)->WaitForExit(std::chrono::seconds(30));
      // The proxy may still be finishing the responses to the dead connections.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const uint64_t first_pull_bytes = proxy_->BodyBytesSent("GET", "/blobs/") - bytes_at_start;

      // Restart: the image is either reported complete or not at all.
      StartDaemon(root);
      std::vector<std::string> ids = ListedIds();
      EXPECT_TRUE(ids.empty() || (ids.size() == 1 && ids[0] == image_id))
          << when << ": " << ::testing::PrintToString(ids);
      if (!ids.empty()) ++complete_before_kill;
      ExpectCheckClean({}, when + ", after the restart");

      // Pull again: it resumes what the killed pull fetched.
      const uint64_t bytes_before_repull = proxy_->BodyBytesSent("GET", "/blobs/");
      CommandResult again = Cli({"pull", reference()});
      EXPECT_EQ(again.exit_code, 0) << when << ": " << again.err;
      EXPECT_EQ(ListedIds(), std::vector<std::string>{image_id}) << when;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const uint64_t second_pull_bytes =
          proxy_->BodyBytesSent("GET", "/blobs/") - bytes_before_repull;
      ExpectCheckClean({}, when + ", after the re-pull");
      StopDaemon();
      ExpectRootfs(root, when);

      const uint64_t fetched = first_pull_bytes + second_pull_bytes;
      if (fetched > image_blob_bytes_) redownloaded += fetched - image_blob_bytes_;
      if (::testing::Test::HasFailure()) {
        ++failures;
        break;  // the first failure says enough; later iterations would repeat it
      }
      std::error_code ignored;
      fs::remove_all(root, ignored);
    }
    std::printf(
        "crash loop: %d iterations, %d failures, pull %.2f s, %d killed after the image was named; "
        "blob bytes downloaded twice: %llu of %llu pulled (%.1f%% of one image per iteration)\n",
        iterations, failures, static_cast<double>(pull_us) / 1e6, complete_before_kill,
        static_cast<unsigned long long>(redownloaded),
        static_cast<unsigned long long>(image_blob_bytes_ * static_cast<uint64_t>(iterations)),
        100.0 * static_cast<double>(redownloaded) /
            (static_cast<double>(image_blob_bytes_) * iterations));
    RecordProperty("redownloaded_bytes", std::to_string(redownloaded));
  }

  static inline TestRegistry* registry_ = nullptr;
  static inline imagegen::Image* image_ = nullptr;
  static inline uint64_t image_blob_bytes_ = 0;
  std::optional<berth::testing::TempDir> dir_;
  std::unique_ptr<FaultProxy> proxy_;
  std::unique_ptr<ChildProcess> daemon_;
};

TEST_F(CrashTest, KilledDuringPullLeavesNoHalfImageAndTheNextPullResumes) {
  KillLoop(BERTH_CRASH_DEFAULT_ITERATIONS);
}

// The same with the erofs snapshotter, where berthd dies while writing layer images: a fifth of
// the iterations (the loop is the suite's longest test).
TEST_F(CrashTest, KilledDuringAnErofsPullLeavesNoHalfImageAndTheNextPullResumes) {
  if (!snapshot::ErofsSnapshotter::KernelSupportsErofs()) GTEST_SKIP() << "no erofs in the kernel";
  WriteConfig("erofs");
  KillLoop(std::max(1, BERTH_CRASH_DEFAULT_ITERATIONS / 5));
}

// Regular files under `dir`, and its entries (a snapshotter's snapshot directories).
size_t CountFiles(const fs::path& dir) {
  size_t files = 0;
  std::error_code error;
  for (fs::recursive_directory_iterator it(dir, error), end; !error && it != end;
       it.increment(error)) {
    if (it->is_regular_file()) ++files;
  }
  return files;
}

size_t CountEntries(const fs::path& dir) {
  std::error_code error;
  size_t entries = 0;
  for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
    ++entries;
  }
  return entries;
}

// Bytes allocated under `dir`, as `du -s -B1` counts them.
uint64_t DiskUsage(const fs::path& dir) {
  CommandResult du = berth::testing::RunCommand({"/usr/bin/du", "-s", "-B1", dir.string()}, dir)
                         .value_or(CommandResult{});
  EXPECT_EQ(du.exit_code, 0) << du.err;
  return std::strtoull(du.out.c_str(), nullptr, 10);
}

// Issue 12: pulls killed with berthd, then a complete pull of the same image, `berth rmi` and
// `berth gc`: every byte of the image is given back at once, although the killed pulls'
// resume window has not passed (their leases died with their pulls; the image completed them).
TEST_F(CrashTest, AfterKilledPullsRemoveAndCollectFreeTheWholeImage) {
  const fs::path root = dir_->path() / "root";
  for (int i = 0; i < 3; ++i) PullAndKillAfter(root, 256 << 10);
  StartDaemon(root);
  CommandResult pulled = Cli({"pull", reference()});
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err << daemon_->ReadLog();
  CommandResult removed = Cli({"rmi", reference()});
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  CommandResult collected = Cli({"gc"});
  ASSERT_EQ(collected.exit_code, 0) << collected.err;
  StopDaemon();

  const std::string snapshotter =
      snapshot::OverlaySnapshotter::KernelSupportsOverlay() ? "overlayfs" : "native";
  EXPECT_EQ(CountFiles(root / "content"), 0u) << "blobs or ingests left";
  EXPECT_EQ(CountEntries(root / "snapshots" / snapshotter / "snapshots"), 0u)
      << "snapshot directories left";
  // Empty directories only: far less than one layer.
  EXPECT_LT(DiskUsage(root / "content") + DiskUsage(root / "snapshots"), uint64_t{64} << 10);
}

// The other half of issue 12: a pull that nobody completed still resumes. Killed again and again
// (each restart releases the dead pull's lease, and a collection runs), the downloads go on from
// the bytes already fetched instead of starting over.
TEST_F(CrashTest, KilledPullsStillResumeAcrossCollections) {
  const fs::path root = dir_->path() / "root";
  constexpr uint64_t kBeforeKill = uint64_t{640} << 10;
  uint64_t fetched = 0;
  for (int i = 0; i < 2; ++i) {
    fetched += PullAndKillAfter(root, kBeforeKill);
    StartDaemon(root);
    CommandResult collected = Cli({"gc"});
    EXPECT_EQ(collected.exit_code, 0) << collected.err;
    EXPECT_TRUE(ListedIds().empty()) << "a pull completed before it was killed";
    StopDaemon();
  }
  StartDaemon(root);
  const uint64_t before_last = proxy_->BodyBytesSent("GET", "/blobs/");
  CommandResult pulled = Cli({"pull", reference()});
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err << daemon_->ReadLog();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  fetched += proxy_->BodyBytesSent("GET", "/blobs/") - before_last;
  StopDaemon();
  ExpectRootfs(root, "after the resumed pulls");

  // What a kill loses is only what was in flight (a few chunks per download); starting over
  // would fetch each killed pull's bytes again.
  ASSERT_GE(fetched, image_blob_bytes_);
  EXPECT_LT(fetched - image_blob_bytes_, kBeforeKill)
      << "fetched " << fetched << " bytes for an image of " << image_blob_bytes_;
}

// Content or snapshots removed by hand: after a restart the image is no longer reported, `berth
// check` names the problem, and a pull repairs it.
TEST_F(CrashTest, ContentOrSnapshotsRemovedBehindBerthsBackAreRepairedByAPull) {
  for (const std::string what : {"content", "snapshots"}) {
    SCOPED_TRACE(what);
    const fs::path root = dir_->path() / ("root-" + what);
    StartDaemon(root);
    CommandResult pulled = Cli({"pull", reference()});
    ASSERT_EQ(pulled.exit_code, 0) << pulled.err;
    StopDaemon();
    fs::remove_all(root / what);

    CommandResult check = Cli({"check", "--json"}, root);
    EXPECT_EQ(check.exit_code, 1) << check.out << check.err;
    json report = json::parse(check.out, nullptr, false);
    ASSERT_TRUE(report.is_object()) << check.out << check.err;
    EXPECT_FALSE(report["problems"].empty()) << check.out;

    StartDaemon(root);
    EXPECT_TRUE(ListedIds().empty()) << "an image with missing " << what << " is still reported";
    CommandResult repaired = Cli({"pull", reference()});
    EXPECT_EQ(repaired.exit_code, 0) << repaired.err << daemon_->ReadLog();
    EXPECT_EQ(ListedIds(), std::vector<std::string>{image_->config.digest.ToString()});
    StopDaemon();
    ExpectCheckClean(root, "after the repairing pull");
    ExpectRootfs(root, "after the repairing pull");
  }
}

}  // namespace
}  // namespace berth
