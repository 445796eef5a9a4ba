// The berth CLI's image commands (pull, images, inspect, rmi, fsinfo) end to end, in both of its
// modes: embedded (the CLI opens the root itself) and daemon (the same commands go to the built
// berthd over CRI, which its request log proves; pull progress, gc and check over berthd's
// berth.v1.Admin service on the same socket); and the refusal when a berthd holds the root but
// does not answer at the address the CLI was given.
#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "berth/snapshot/overlay_snapshotter.h"
#include "testing/child_process.h"
#include "testing/fault_proxy.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"
#include "testing/test_images.h"
#include "testing/test_registry.h"

extern char** environ;

namespace berth {
namespace {

using berth::testing::ChildProcess;
using berth::testing::FaultAction;
using berth::testing::FaultProxy;
using berth::testing::TempDir;
using berth::testing::TestRegistry;
using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

using CliRun = berth::testing::CommandResult;
namespace fs = std::filesystem;

json ParseJson(const CliRun& run) {
  json parsed = json::parse(run.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(parsed.is_discarded()) << run.out << run.err;
  return parsed;
}

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto registry = TestRegistry::Start({.log_level = "warn"});
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = registry->release();
    auto a = service::testing::MakeTestImage("a");
    auto b = service::testing::MakeTestImage("b");
    ASSERT_TRUE(a && b);
    image_a_ = new imagegen::Image(std::move(*a));
    image_b_ = new imagegen::Image(std::move(*b));
    for (auto [tag, image] : {std::pair{"a", image_a_}, std::pair{"b", image_b_}}) {
      auto pushed = service::testing::PushTestImage(registry_->url(), "test/img", tag, *image);
      ASSERT_TRUE(pushed) << pushed.error().ToString();
    }
  }
  static void TearDownTestSuite() {
    delete registry_;
    delete image_a_;
    delete image_b_;
  }

  void SetUp() override {
    auto dir = TempDir::Create("cli");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
    // Image b is pinned. The config names the root, so commands without --root use it too.
    std::ofstream(config_file()) << "root = \"" << root() << "\"\n"
                                 << "[pull]\nsnapshotter = \""
                                 << (snapshot::OverlaySnapshotter::KernelSupportsOverlay()
                                         ? "overlayfs"
                                         : "native")
                                 << "\"\npinned_images = [\"" << Ref("b") << "\"]\n";
  }

  std::string config_file() const { return dir_->Join("config.toml").string(); }
  std::string root() const { return dir_->Join("root").string(); }
  std::string address() const { return "unix://" + dir_->Join("berth.sock").string(); }
  std::string Ref(std::string_view tag) const {
    return registry_->host() + "/test/img:" + std::string(tag);
  }

  // Runs the berth binary with --config and `args`.
  CliRun Run(std::vector<std::string> args) {
    std::vector<std::string> argv = {BERTH_CLI_PATH, "--config", config_file()};
    argv.insert(argv.end(), args.begin(), args.end());
    Result<CliRun> run = berth::testing::RunCommand(argv, dir_->path());
    EXPECT_TRUE(run) << run.error().ToString();
    return run.value_or(CliRun{});
  }

  // Bytes allocated under the root's content store and snapshots, as du counts them.
  int64_t DiskBytes() {
    Result<CliRun> du = berth::testing::RunCommand(
        {"/usr/bin/du", "-s", "-B1", "-c", root() + "/content", root() + "/snapshots"},
        dir_->path());
    EXPECT_TRUE(du && du->exit_code == 0);
    if (!du || du->exit_code != 0) return -1;
    size_t total = du->out.rfind("\n", du->out.size() - 2);
    return std::stoll(du->out.substr(total == std::string::npos ? 0 : total + 1));
  }

  // Runs and expects success.
  CliRun MustRun(std::vector<std::string> args) {
    CliRun run = Run(args);
    EXPECT_EQ(run.exit_code, 0) << ::testing::PrintToString(args) << "\n"
                                << run.err << (daemon_ ? daemon_->ReadLog() : "");
    return run;
  }

  void StartDaemon() {
    auto daemon = ChildProcess::Start(
        {.argv = {BERTHD_PATH, "--config", config_file(), "--state", dir_->Join("state").string(),
                  "--address", address(), "--log-level", "info"},
         .log_file = dir_->Join("berthd.log")});
    ASSERT_TRUE(daemon) << daemon.error().ToString();
    daemon_ = std::move(*daemon);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (daemon_->ReadLog().find("berthd.ready") == std::string::npos) {
      ASSERT_TRUE(daemon_->Running()) << daemon_->ReadLog();
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << daemon_->ReadLog();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  void StopDaemon() {
    berth::testing::ExitStatus status = daemon_->Stop(std::chrono::seconds(20));
    EXPECT_TRUE(status.success()) << status.ToString() << "\n" << daemon_->ReadLog();
  }

  // The request lines berthd logged for `method` (CRI, or berth.v1.Admin with kind "admin").
  size_t RequestsLogged(std::string_view method, std::string_view kind = "cri") const {
    std::string log = daemon_->ReadLog();
    std::string needle = std::string(kind) + ".request method=" + std::string(method);
    size_t count = 0;
    for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) {
      ++count;
    }
    return count;
  }

  // pull, images (JSON and table), inspect, fsinfo, rmi (pinned needs --force); `args` comes
  // before each command (the mode's --root/--address).
  void ExerciseImageCommands(const std::vector<std::string>& args) {
    auto with = [&](std::vector<std::string> command) {
      std::vector<std::string> all = args;
      all.insert(all.end(), command.begin(), command.end());
      return all;
    };
    const std::string id_a = image_a_->config.digest.ToString();
    const std::string id_b = image_b_->config.digest.ToString();
    EXPECT_EQ(MustRun(with({"pull", Ref("a")})).out, id_a + "\n");
    EXPECT_EQ(MustRun(with({"pull", "-q", Ref("b")})).out, id_b + "\n");

    json images = ParseJson(MustRun(with({"images", "--json"})));
    ASSERT_TRUE(images.is_array());
    ASSERT_EQ(images.size(), 2u) << images.dump(2);
    for (const json& image : images) {
      const bool is_a = image["id"] == id_a;
      EXPECT_THAT(image["repoTags"], ElementsAre(Ref(is_a ? "a" : "b")));
      EXPECT_THAT(image["repoDigests"],
                  ElementsAre(registry_->host() + "/test/img@" +
                              (is_a ? image_a_ : image_b_)->manifest.digest.ToString()));
      EXPECT_GT(image["size"].get<int64_t>(), 0);
      EXPECT_EQ(image["pinned"], !is_a);
    }
    json filtered = ParseJson(MustRun(with({"images", "--json", id_a.substr(7, 12)})));
    ASSERT_EQ(filtered.size(), 1u);
    EXPECT_EQ(filtered[0]["id"], id_a);

    CliRun table = MustRun(with({"images"}));
    EXPECT_THAT(table.out, HasSubstr("IMAGE ID"));
    EXPECT_THAT(table.out, HasSubstr(id_a.substr(7, 12) + "  " + Ref("a")));
    EXPECT_THAT(
        table.out,
        HasSubstr("/test/img@sha256:" + image_a_->manifest.digest.encoded().substr(0, 12) + " "));
    EXPECT_THAT(table.out, Not(HasSubstr(image_a_->manifest.digest.encoded())));

    json inspected = ParseJson(MustRun(with({"inspect", Ref("a")})));
    EXPECT_EQ(inspected["status"]["id"], id_a);
    EXPECT_EQ(inspected["status"]["uid"], 1000);
    EXPECT_EQ(inspected["status"]["pinned"], false);
    EXPECT_THAT(inspected["info"]["chainID"].get<std::string>(), HasSubstr("sha256:"));
    EXPECT_EQ(inspected["info"]["imageSpec"]["config"]["User"], "1000:1000");
    EXPECT_FALSE(inspected["info"]["snapshotter"].get<std::string>().empty());
    CliRun missing = Run(with({"inspect", "docker.io/library/absent:1"}));
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_THAT(missing.err, HasSubstr("error: no such image: docker.io/library/absent:1"));

    json filesystems = ParseJson(MustRun(with({"fsinfo", "--json"})));
    ASSERT_TRUE(filesystems.is_array());
    ASSERT_FALSE(filesystems.empty());
    EXPECT_GT(filesystems[0]["usedBytes"].get<uint64_t>(), 0u);
    EXPECT_GT(filesystems[0]["inodesUsed"].get<uint64_t>(), 0u);
    EXPECT_THAT(MustRun(with({"fsinfo"})).out, HasSubstr("MOUNTPOINT"));

    CliRun pinned = Run(with({"rmi", Ref("b")}));
    EXPECT_EQ(pinned.exit_code, 1);
    EXPECT_THAT(pinned.err, HasSubstr("pinned"));
    EXPECT_THAT(pinned.err, HasSubstr("--force"));
    EXPECT_EQ(MustRun(with({"rmi", "--force", Ref("b")})).out, "Deleted: " + id_b + "\n");
    EXPECT_EQ(MustRun(with({"rmi", id_a.substr(7, 12)})).out, "Deleted: " + id_a + "\n");
    CliRun gone = Run(with({"rmi", Ref("a")}));
    EXPECT_EQ(gone.exit_code, 1);
    EXPECT_THAT(gone.err, HasSubstr("error: no such image"));
    EXPECT_EQ(ParseJson(MustRun(with({"images", "--json"}))), json::array());
  }

  static inline TestRegistry* registry_ = nullptr;
  static inline imagegen::Image* image_a_ = nullptr;
  static inline imagegen::Image* image_b_ = nullptr;
  std::optional<TempDir> dir_;
  std::unique_ptr<ChildProcess> daemon_;
};

TEST_F(CliTest, EmbeddedMode) {
  // Nothing listens at the address: the CLI opens the root itself.
  ASSERT_NO_FATAL_FAILURE(ExerciseImageCommands({"--address", address()}));
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(root()) / "metadata.db"));
}

TEST_F(CliTest, BadReferenceFails) {
  CliRun bad = Run({"--address", address(), "pull", "Not A//Valid:Reference"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_EQ(bad.out, "");
  EXPECT_THAT(bad.err, HasSubstr("error:"));
}

// `berth mount` names images as `berth inspect` does: a 12-hex image ID prefix works for both.
TEST_F(CliTest, MountTakesAnImageIdPrefix) {
  const std::string id = image_a_->config.digest.ToString();
  const std::string prefix = image_a_->config.digest.encoded().substr(0, 12);
  EXPECT_EQ(MustRun({"--address", address(), "pull", "-q", Ref("a")}).out, id + "\n");
  EXPECT_EQ(ParseJson(MustRun({"--address", address(), "inspect", prefix}))["status"]["id"], id);

  const fs::path target = dir_->Join("mnt");
  fs::create_directories(target);
  CliRun mounted = MustRun({"--address", address(), "mount", prefix, target.string()});
  ASSERT_EQ(mounted.exit_code, 0) << mounted.err;
  std::ifstream own(target / "a.txt");
  std::stringstream content;
  content << own.rdbuf();
  EXPECT_EQ(content.str(), "image a\n");
  EXPECT_TRUE(fs::exists(target / "etc/os-release"));
  MustRun({"--address", address(), "unmount", target.string()});
  EXPECT_FALSE(fs::exists(target / "a.txt")) << "still mounted";
}

TEST_F(CliTest, DaemonModeGoesOverCri) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ASSERT_NO_FATAL_FAILURE(ExerciseImageCommands({"--address", address()}));
  // Every command reached berthd as CRI requests.
  EXPECT_EQ(RequestsLogged("PullImage"), 2u) << daemon_->ReadLog();
  EXPECT_GE(RequestsLogged("ListImages"), 4u);
  EXPECT_GE(RequestsLogged("ImageStatus"), 4u);
  EXPECT_EQ(RequestsLogged("RemoveImage"), 3u);  // the refused pinned one, then two
  EXPECT_EQ(RequestsLogged("ImageFsInfo"), 2u);

  // An explicit --root held by the berthd answering at the address goes to it too.
  MustRun({"--address", address(), "pull", Ref("a")});
  size_t listed = RequestsLogged("ListImages");
  json images = ParseJson(MustRun({"--root", root(), "--address", address(), "images", "--json"}));
  EXPECT_EQ(images.size(), 1u);
  EXPECT_EQ(RequestsLogged("ListImages"), listed + 1);

  // --snapshotter and --platform cannot be carried over CRI.
  CliRun platform = Run({"--address", address(), "pull", "--platform", "linux/arm64", Ref("a")});
  EXPECT_EQ(platform.exit_code, 1);
  EXPECT_THAT(platform.err, HasSubstr("--platform"));

  // What berthd pulled, the CLI finds in the root once berthd is gone.
  ASSERT_NO_FATAL_FAILURE(StopDaemon());
  json embedded = ParseJson(MustRun({"--address", address(), "images", "--json"}));
  ASSERT_EQ(embedded.size(), 1u);
  EXPECT_EQ(embedded[0]["id"], image_a_->config.digest.ToString());
}

// Daemon mode: `berth pull` follows berthd's progress of its pull (berth.v1.Admin.PullProgress
// on the CRI socket) and prints a line per layer as it is fetched and unpacked.
TEST_F(CliTest, DaemonPullPrintsEachLayersProgressFromBerthd) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  auto proxy = FaultProxy::Start(registry_->host());
  ASSERT_TRUE(proxy) << proxy.error().ToString();
  // Every layer trickles in, in about eight pieces.
  for (const imagegen::Layer& layer : image_a_->layers) {
    ASSERT_TRUE((*proxy)->AddRule(
        {.method = "GET",
         .target_contains = layer.blob.digest.ToString(),
         .action = FaultAction::SlowDrip(static_cast<size_t>(layer.blob.size / 8 + 1),
                                         std::chrono::milliseconds(50))}));
  }
  const std::string reference = (*proxy)->host() + "/test/img:a";
  CliRun pulled = MustRun({"--address", address(), "pull", "--progress", reference});
  EXPECT_EQ(pulled.out, image_a_->config.digest.ToString() + "\n");
  for (size_t i = 0; i < image_a_->layers.size(); ++i) {
    const imagegen::Layer& layer = image_a_->layers[i];
    const std::string id = layer.blob.digest.encoded().substr(0, 12);
    SCOPED_TRACE(layer.blob.digest.ToString());
    EXPECT_THAT(pulled.err, HasSubstr(fmt::format("blob   {}  {}/{} bytes", id, layer.blob.size,
                                                  layer.blob.size)));
    EXPECT_THAT(pulled.err, HasSubstr(fmt::format("layer {}  {}  unpacked ", i + 1, id)));
  }
  EXPECT_EQ(RequestsLogged("PullProgress", "admin"), 1u) << daemon_->ReadLog();
  EXPECT_EQ(RequestsLogged("PullImage"), 1u);
}

// Daemon mode: `berth gc` and `berth check` go to berthd (berth.v1.Admin) and report what it
// found and freed in its root.
TEST_F(CliTest, DaemonGcAndCheckGoThroughBerthd) {
  // What a failed pull fetched is garbage at once.
  std::ofstream(config_file(), std::ios::app) << "resume_window = \"0\"\n";
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  const std::vector<std::string> daemon = {"--address", address()};
  auto with = [&](std::vector<std::string> command) {
    std::vector<std::string> all = daemon;
    all.insert(all.end(), command.begin(), command.end());
    return all;
  };
  MustRun(with({"pull", Ref("a")}));
  CliRun clean = Run(with({"check", "--json"}));
  EXPECT_EQ(clean.exit_code, 0) << clean.out << clean.err;
  EXPECT_EQ(ParseJson(clean)["clean"], true) << clean.out;

  // Image b's own layer is refused: its manifest and config are fetched, then nothing names
  // them (its base layer is image a's).
  auto proxy = FaultProxy::Start(registry_->host());
  ASSERT_TRUE(proxy) << proxy.error().ToString();
  ASSERT_TRUE((*proxy)->AddRule({.method = "GET",
                                 .target_contains = image_b_->layers.back().blob.digest.ToString(),
                                 .action = FaultAction::Respond(404)}));
  CliRun refused = Run(with({"pull", (*proxy)->host() + "/test/img:b"}));
  ASSERT_NE(refused.exit_code, 0) << refused.err;

  json would = ParseJson(MustRun(with({"gc", "--dry-run", "--json"})));
  ASSERT_TRUE(would.is_object());
  const std::string would_removed = would["removed"].dump();
  EXPECT_THAT(would_removed, HasSubstr(image_b_->config.digest.ToString()));
  EXPECT_THAT(would_removed, Not(HasSubstr(image_a_->config.digest.ToString())));
  const fs::path b_config =
      fs::path(root()) / "content" / "blobs" / "sha256" / image_b_->config.digest.encoded();
  EXPECT_TRUE(fs::exists(b_config)) << "the dry run removed something";

  const int64_t before = DiskBytes();
  json report = ParseJson(MustRun(with({"gc", "--json"})));
  const int64_t after = DiskBytes();
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report["removed"], would["removed"]);
  EXPECT_GE(report["blobs"]["count"].get<int64_t>(), 2) << report.dump();
  EXPECT_FALSE(fs::exists(b_config));
  // du sees what berthd reports, up to an ingest's directory and bookkeeping files.
  const int64_t freed = report["bytes"].get<int64_t>();
  EXPECT_GT(freed, 0);
  EXPECT_GE(before - after, freed) << report.dump();
  EXPECT_LE(before - after, freed + 4096 * 3 * report["ingests"]["count"].get<int64_t>())
      << report.dump();
  EXPECT_EQ(RequestsLogged("CollectGarbage", "admin"), 2u) << daemon_->ReadLog();

  // A snapshot directory removed behind berthd's back is a problem berthd's check names.
  const fs::path snapshots = fs::path(root()) / "snapshots";
  fs::path removed;
  for (const auto& snapshotter : fs::directory_iterator(snapshots)) {
    for (const auto& snapshot : fs::directory_iterator(snapshotter.path() / "snapshots")) {
      removed = snapshot.path();
      break;
    }
  }
  ASSERT_FALSE(removed.empty()) << "no snapshot directory under " << snapshots;
  fs::remove_all(removed);
  CliRun broken = Run(with({"check", "--json"}));
  EXPECT_EQ(broken.exit_code, 1) << broken.out << broken.err;
  json problems = ParseJson(broken);
  EXPECT_EQ(problems["clean"], false);
  EXPECT_FALSE(problems["problems"].empty()) << broken.out;
  EXPECT_EQ(RequestsLogged("Check", "admin"), 2u);
}

TEST_F(CliTest, RefusesWhenBerthdHoldsTheRootElsewhere) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  const std::string other = "unix://" + dir_->Join("other.sock").string();
  const std::string daemon = fmt::format("berthd (pid {})", daemon_->pid());
  // With the root from --root, and from the config.
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--root", root(), "--address", other, "images"},
        std::vector<std::string>{"--address", other, "pull", Ref("a")}}) {
    CliRun refused = Run(args);
    EXPECT_EQ(refused.exit_code, 1) << refused.out;
    EXPECT_THAT(refused.err, HasSubstr("error: " + daemon + " is running on root " + root()));
    EXPECT_THAT(refused.err, HasSubstr("nothing answers at " + other));
    EXPECT_EQ(refused.out, "");
  }
  EXPECT_EQ(RequestsLogged("PullImage"), 0u);
}

}  // namespace
}  // namespace berth
