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
#include <unistd.h>

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

#include "berth/snapshot/erofs_snapshotter.h"
#include "berth/snapshot/overlay_snapshotter.h"
#include "testing/berthd_process.h"
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
using ::testing::AllOf;
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

  // A proxy to the registry through which every layer of image a trickles in, in about eight
  // pieces `piece` apart.
  void StartTricklingProxy(std::chrono::milliseconds piece, std::unique_ptr<FaultProxy>& proxy) {
    auto started = FaultProxy::Start(registry_->host());
    ASSERT_TRUE(started) << started.error().ToString();
    proxy = std::move(*started);
    for (const imagegen::Layer& layer : image_a_->layers) {
      ASSERT_TRUE(proxy->AddRule(
          {.method = "GET",
           .target_contains = layer.blob.digest.ToString(),
           .action = FaultAction::SlowDrip(static_cast<size_t>(layer.blob.size / 8 + 1), piece)}));
    }
  }

  // `berth pull --progress` said of every layer of image a, in lines of their own, that it
  // was fetched and that it was unpacked (pull_progress.h, LineView).
  void ExpectALinePerLayerFetchedAndUnpacked(const std::string& output) {
    const size_t count = image_a_->layers.size();
    for (size_t i = 0; i < count; ++i) {
      const std::string id = image_a_->layers[i].blob.digest.encoded().substr(0, 12);
      const std::string start = fmt::format("layer {}/{}  {}  ", i + 1, count, id);
      SCOPED_TRACE(start);
      EXPECT_THAT(output, HasSubstr(start + "unpacked "));
      size_t at = output.find(start);
      bool fetched = false;
      for (; at != std::string::npos; at = output.find(start, at + 1)) {
        fetched |=
            output.substr(at, output.find('\n', at) - at).find(" fetched") != std::string::npos;
      }
      EXPECT_TRUE(fetched) << output;
    }
  }

  void StartDaemon() {
    auto daemon = berth::testing::StartBerthd({.config_file = config_file(),
                                               .state = dir_->Join("state"),
                                               .socket = dir_->Join("berth.sock"),
                                               .log_file = dir_->Join("berthd.log")});
    ASSERT_TRUE(daemon) << daemon.error().ToString();
    daemon_ = std::move(*daemon);
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
  std::unique_ptr<FaultProxy> proxy;
  ASSERT_NO_FATAL_FAILURE(StartTricklingProxy(std::chrono::milliseconds(50), proxy));
  const std::string reference = proxy->host() + "/test/img:a";
  CliRun pulled = MustRun({"--address", address(), "pull", "--progress", reference});
  EXPECT_EQ(pulled.out, image_a_->config.digest.ToString() + "\n");
  ExpectALinePerLayerFetchedAndUnpacked(pulled.err);
  EXPECT_THAT(pulled.err, HasSubstr("pulled " + reference + " in "));
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

// A layer image of the erofs snapshotter truncated behind berth's back: `berth check` names it,
// `--repair` drops it (and the image's snapshots above it), and the next pull makes it again.
TEST_F(CliTest, ADamagedErofsLayerIsReportedRepairedAndPulledAgain) {
  if (!snapshot::ErofsSnapshotter::KernelSupportsErofs()) GTEST_SKIP() << "no erofs in the kernel";
  std::ofstream(config_file()) << "root = \"" << root() << "\"\n[pull]\nsnapshotter = \"erofs\"\n";
  const std::vector<std::string> embedded = {"--address", address()};
  auto with = [&](std::vector<std::string> command) {
    command.insert(command.begin(), embedded.begin(), embedded.end());
    return command;
  };
  MustRun(with({"pull", "-q", Ref("a")}));
  CliRun clean = Run(with({"check", "--json"}));
  EXPECT_EQ(ParseJson(clean)["clean"], true) << clean.out << clean.err;
  fs::path image;
  for (const auto& entry : fs::recursive_directory_iterator(fs::path(root()) / "snapshots")) {
    if (entry.path().filename() == "layer.erofs") image = entry.path();
  }
  ASSERT_FALSE(image.empty()) << "no layer image under " << root();
  fs::resize_file(image, 2048);  // the superblock stays; the blocks it counts do not

  CliRun broken = Run(with({"check", "--json"}));
  EXPECT_EQ(broken.exit_code, 1) << broken.out << broken.err;
  EXPECT_THAT(ParseJson(broken)["problems"].dump(), HasSubstr("gone or damaged")) << broken.out;
  CliRun repaired = Run(with({"check", "--repair"}));
  EXPECT_EQ(repaired.exit_code, 0) << repaired.out << repaired.err;
  // What is left is the image, whose snapshots are gone until it is pulled again.
  CliRun after = Run(with({"check", "--json"}));
  EXPECT_THAT(ParseJson(after)["problems"].dump(),
              AllOf(Not(HasSubstr("gone or damaged")), HasSubstr("pulled again")))
      << after.out;

  MustRun(with({"pull", "-q", Ref("a")}));
  CliRun pulled_again = Run(with({"check", "--json"}));
  EXPECT_EQ(ParseJson(pulled_again)["clean"], true) << pulled_again.out << pulled_again.err;
  const fs::path target = dir_->Join("mnt");
  fs::create_directories(target);
  MustRun(with({"mount", Ref("a"), target.string()}));
  std::ifstream own(target / "a.txt");
  std::stringstream content;
  content << own.rdbuf();
  EXPECT_EQ(content.str(), "image a\n");
  MustRun(with({"unmount", target.string()}));
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

// Embedded mode on a terminal (a real one: tmux): one line per layer, redrawn in place while
// the layers trickle in, then a summary; and no log line, since nothing went wrong.
TEST_F(CliTest, PullOnATerminalDrawsALiveLinePerLayerAndASummary) {
  std::unique_ptr<FaultProxy> proxy;
  ASSERT_NO_FATAL_FAILURE(StartTricklingProxy(std::chrono::milliseconds(100), proxy));
  const std::string reference = proxy->host() + "/test/img:a";
  const std::string server = "berth-cli-test-" + std::to_string(::getpid());
  const std::string done = dir_->Join("done").string();
  const std::string command =
      fmt::format("{} --config {} --address {} pull {}; touch {}; sleep 60", BERTH_CLI_PATH,
                  config_file(), address(), reference, done);
  auto tmux = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/tmux", "-L", server});
    Result<CliRun> run = berth::testing::RunCommand(args, dir_->path());
    EXPECT_TRUE(run && run->exit_code == 0) << (run ? run->err : run.error().ToString());
    return run.value_or(CliRun{}).out;
  };
  tmux({"new-session", "-d", "-x", "150", "-y", "40", "-s", "pull", command});
  // While the layers trickle in, the lines show them downloading.
  std::string during;
  for (int i = 0; i < 100 && !fs::exists(done); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::string pane = tmux({"capture-pane", "-p", "-t", "pull"});
    if (pane.find("downloading") != std::string::npos) during = pane;
  }
  for (int i = 0; i < 200 && !fs::exists(done); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const std::string pane = tmux({"capture-pane", "-p", "-t", "pull"});
  tmux({"kill-server"});
  ASSERT_TRUE(fs::exists(done)) << pane;
  EXPECT_THAT(during, HasSubstr(" / ")) << "no line showed bytes fetched of the total";
  const size_t count = image_a_->layers.size();
  for (size_t i = 0; i < count; ++i) {
    const std::string line = fmt::format("layer {}/{}", i + 1, count);
    const std::string id = image_a_->layers[i].blob.digest.encoded().substr(0, 12);
    // Redrawn in place: the layer has one line, and it ends done and unpacked.
    EXPECT_EQ(pane.find(line), pane.rfind(line)) << pane;
    const size_t at = pane.find(line);
    ASSERT_NE(at, std::string::npos) << pane;
    const std::string drawn = pane.substr(at, pane.find('\n', at) - at);
    EXPECT_THAT(drawn, HasSubstr(id));
    EXPECT_THAT(drawn, HasSubstr("done"));
    EXPECT_THAT(drawn, HasSubstr("unpacked"));
  }
  EXPECT_THAT(pane, HasSubstr("pulled " + reference + " in "));
  EXPECT_THAT(pane, HasSubstr(image_a_->config.digest.ToString()));
  EXPECT_THAT(pane, Not(HasSubstr("gc.done")));
  EXPECT_THAT(pane, Not(HasSubstr(" info ")));
}

// --json: every line on stdout is one JSON object; each layer reaches "committed"; the last
// line is the result.
TEST_F(CliTest, PullJsonStreamsEventsAndTheResult) {
  CliRun pulled = MustRun({"--address", address(), "pull", "--json", Ref("a")});
  EXPECT_EQ(pulled.err, "");
  std::vector<json> events;
  std::istringstream lines(pulled.out);
  for (std::string line; std::getline(lines, line);) {
    json event = json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(event.is_discarded()) << line;
    events.push_back(event);
  }
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["event"], "pulled");
  EXPECT_EQ(events.back()["image_id"], image_a_->config.digest.ToString());
  EXPECT_EQ(events.back()["reference"], Ref("a"));
  for (const imagegen::Layer& layer : image_a_->layers) {
    bool committed = false;
    for (const json& event : events) {
      committed |= event["event"] == "blob" && event["digest"] == layer.blob.digest.ToString() &&
                   event["state"] == "committed" && event["fetched_bytes"] == layer.blob.size;
    }
    EXPECT_TRUE(committed) << layer.blob.digest.ToString() << "\n" << pulled.out;
  }
}

// The CLI's output is for people: its log (here the start-up garbage collection's) goes to
// stderr only with -v.
TEST_F(CliTest, TheCliLogsOnlyWhenAsked) {
  CliRun quiet = MustRun({"--address", address(), "images"});
  EXPECT_EQ(quiet.err, "");
  CliRun verbose = MustRun({"-v", "--address", address(), "images"});
  EXPECT_THAT(verbose.err, HasSubstr("gc.done"));
}

}  // namespace
}  // namespace berth
