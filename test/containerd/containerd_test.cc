// End-to-end tests of the containerd harness (testing/containerd_process.h): a real containerd
// 1.6 with runc, pulling from a real loopback registry through a hosts.toml entry, running
// containers, and leaving nothing behind. The pull, run and pod tests run three times: with
// containerd's own overlayfs snapshotter, and with berthd as its proxy snapshotter "berth"
// (berthd's Snapshots API on a socket of its own; containerd unpacks the layers itself into
// berth's snapshots), backed by berth's overlayfs snapshotter and by its erofs one (the
// containers' layers are then berth's EROFS layer mounts).
//
// Tests skip, saying why, only when containerd or runc is not installed; CI installs them
// (scripts/setup.sh), so there they run. Needs root (mounts, cgroups).
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/vfs.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "berth/base/file_util.h"
#include "berth/image/manifest.h"
#include "test/containerd/containerd_images.h"
#include "test/containerd/cri_runtime_client.h"
#include "testing/berthd_process.h"
#include "testing/child_process.h"
#include "testing/containerd_process.h"
#include "testing/eventually.h"
#include "testing/fault_proxy.h"
#include "testing/net_util.h"
#include "testing/result_matchers.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"
#include "testing/test_registry.h"

namespace berth::containerd_test {
namespace {

using ::berth::testing::Eventually;

namespace fs = std::filesystem;
using berth::testing::ChildProcess;
using berth::testing::CommandResult;
using berth::testing::ContainerdOptions;
using berth::testing::ContainerdProcess;
using berth::testing::RegistryHost;
using berth::testing::TempDir;
using berth::testing::TestRegistry;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr std::string_view kNamespace = "berth-test";

// The registry and the images are the same for every test; each test has its own containerd.
struct SharedImages {
  std::unique_ptr<TestRegistry> registry;
  imagegen::Image busybox;
  imagegen::Image pause;
};

SharedImages* shared = nullptr;

Result<void> PrepareImages() {
  auto images = std::make_unique<SharedImages>();
  BERTH_ASSIGN_OR_RETURN(images->registry, TestRegistry::Start());
  BERTH_ASSIGN_OR_RETURN(images->busybox, MakeBusyboxImage());
  BERTH_ASSIGN_OR_RETURN(images->pause, MakePauseImage(BERTH_PAUSE_PATH));
  const std::string url = images->registry->url();
  BERTH_RETURN_IF_ERROR(PushImage(url, "busybox", "latest", images->busybox));
  BERTH_RETURN_IF_ERROR(PushImage(url, "pause", "latest", images->pause));
  BERTH_RETURN_IF_ERROR(PushImage(url, "library/busybox", "latest", images->busybox));
  shared = images.release();
  return {};
}

// "KEY PARENT KIND" rows of `ctr snapshots ls` as key → parent ("" for none).
std::map<std::string, std::string> SnapshotParents(const std::string& listing) {
  std::map<std::string, std::string> parents;
  std::istringstream lines(listing);
  std::string line;
  std::getline(lines, line);  // The header.
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::vector<std::string> words;
    for (std::string word; fields >> word;) words.push_back(word);
    if (words.size() == 3) parents[words[0]] = words[1];
    if (words.size() == 2) parents[words[0]] = "";
  }
  return parents;
}

// The value of `option=` in a mount command line such as `ctr snapshots mounts` prints.
std::string MountOption(const std::string& mount_command, std::string_view option) {
  const std::string key = std::string(option) + "=";
  size_t start = mount_command.find(key);
  if (start == std::string::npos) return {};
  start += key.size();
  size_t end = mount_command.find_first_of(", \n", start);
  return mount_command.substr(start, end - start);
}

// Whether every directory of an overlay mount's lowerdir= option (colon-separated) is an EROFS
// mount: berth's erofs snapshotter hands containerd its layer mounts.
bool LowerDirsAreErofsMounts(const std::string& lowerdir) {
  if (lowerdir.empty()) return false;
  std::istringstream dirs(lowerdir);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    struct statfs fs_info;
    if (::statfs(dir.c_str(), &fs_info) != 0 || fs_info.f_type != EROFS_SUPER_MAGIC_V1) {
      return false;
    }
  }
  return true;
}

bool ProcessAlive(pid_t pid) {
  Result<std::string> stat = ReadFile(fs::path("/proc") / std::to_string(pid) / "stat");
  if (!stat) return false;
  size_t paren = stat->rfind(')');
  return paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] != 'Z';
}

class ContainerdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!ContainerdProcess::CheckInstalled()) return;
    Result<void> prepared = PrepareImages();
    if (!prepared) {
      std::fprintf(stderr, "preparing the registry and images failed: %s\n",
                   prepared.error().ToString().c_str());
    }
  }
  static void TearDownTestSuite() {
    delete shared;
    shared = nullptr;
  }

  void SetUp() override {
    if (Result<void> installed = ContainerdProcess::CheckInstalled(); !installed) {
      GTEST_SKIP() << installed.error().message();
    }
    ASSERT_NE(shared, nullptr) << "the registry or the images could not be prepared (see above)";
    started_ = std::chrono::steady_clock::now();
    ASSERT_OK_AND_ASSIGN(containerd_, ContainerdProcess::Start(Options()));
  }

  virtual ContainerdOptions Options() const {
    return {.sandbox_image = ImageName("pause", "latest"), .registry_hosts = RegistryHosts()};
  }

  // The names images are pulled by, each served by the loopback registry.
  static std::vector<RegistryHost> RegistryHosts() {
    return {{std::string(kRegistryHost), shared->registry->url()},
            {"docker.io", shared->registry->url()}};
  }

  void TearDown() override {
    if (containerd_ != nullptr && HasFailure()) {
      std::fprintf(stderr, "%s\n", containerd_->LogTail(60).c_str());
    }
    containerd_.reset();
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started_);
    RecordProperty("containerd_ms", static_cast<int>(elapsed.count()));
  }

  // Runs ctr in kNamespace and expects it to succeed; returns its stdout.
  std::string Ctr(const std::vector<std::string>& args) {
    Result<CommandResult> run = containerd_->Ctr(kNamespace, args);
    EXPECT_OK(run);
    if (!run) return {};
    EXPECT_EQ(run->exit_code, 0) << "ctr " << ::testing::PrintToString(args) << ":\n"
                                 << run->out << run->err;
    return run->out;
  }

  void Pull(const std::string& image) {
    Ctr({"images", "pull", "--snapshotter", snapshotter_, "--hosts-dir",
         containerd_->hosts_dir().string(), image});
  }

  // `ctr snapshots --snapshotter <the fixture's> <args...>`.
  std::string CtrSnapshots(std::vector<std::string> args) {
    args.insert(args.begin(), {"snapshots", "--snapshotter", snapshotter_});
    return Ctr(args);
  }

  // `ctr run` options that keep runc's state, the FIFOs and the cgroup inside the harness's.
  std::vector<std::string> RunOptions(const std::string& id) {
    return {"--runc-root",   containerd_->runc_root().string(),
            "--fifo-dir",    containerd_->fifo_dir().string(),
            "--cgroup",      containerd_->cgroup_parent() + "/" + id,
            "--snapshotter", snapshotter_};
  }

  // `ctr run --detach` of a container "sleeper" from `image` that sleeps, with `extra` options.
  void RunSleeper(const std::string& image, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> run = {"run", "--detach", "--null-io"};
    run.insert(run.end(), extra.begin(), extra.end());
    for (std::string& option : RunOptions("sleeper")) run.push_back(std::move(option));
    run.insert(run.end(), {image, "sleeper", "/bin/sleep", "1000"});
    Ctr(run);
  }

  // The snapshotter ctr's pull, run and snapshots commands name.
  std::string snapshotter_ = "overlayfs";
  std::unique_ptr<ContainerdProcess> containerd_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

// The tests that run with either snapshotter: containerd's own "overlayfs", or "berth", berthd
// as containerd's proxy snapshotter (its Snapshots API on a socket of its own, started before
// containerd and stopped after it). ctr and the CRI name the fixture's snapshotter.
class SnapshotterTest : public ContainerdTest,
                        public ::testing::WithParamInterface<std::string_view> {
 protected:
  void SetUp() override {
    // "berth_erofs": berthd as "berth" with its erofs snapshotter (pull.snapshotter).
    snapshotter_ = GetParam() == "berth_erofs" ? "berth" : std::string(GetParam());
    if (GetParam() == "berth_erofs") berth_snapshotter_ = "erofs";
    if (snapshotter_ == "berth") {
      StartBerthd();
      if (HasFatalFailure() || IsSkipped()) return;
    }
    ContainerdTest::SetUp();
  }

  void TearDown() override {
    ContainerdTest::TearDown();  // containerd first: its mounts are of berth's snapshots
    if (berthd_ == nullptr) return;
    if (HasFailure()) std::fprintf(stderr, "berthd:\n%s\n", berthd_->ReadLog().c_str());
    berth::testing::ExitStatus status = berthd_->Stop(std::chrono::seconds(20));
    EXPECT_TRUE(status.success()) << status.ToString();
  }

  ContainerdOptions Options() const override {
    ContainerdOptions options = ContainerdTest::Options();
    if (snapshotter_ == "berth") options.UseProxySnapshotter("berth", snapshots_socket());
    return options;
  }

  // Where berthd's hosts.toml files send it: the loopback registry, as containerd.
  virtual std::vector<RegistryHost> BerthRegistryHosts() const { return RegistryHosts(); }

  fs::path snapshots_socket() const { return berth_dir_.path() / "snapshotter.sock"; }
  // berthd's own snapshotter behind "berth".
  std::string berth_snapshotter_ = "overlayfs";
  fs::path berth_root() const { return berth_dir_.path() / "root"; }
  std::string berth_address() const {
    return "unix://" + (berth_dir_.path() / "berth.sock").string();
  }

  std::string BerthdLog() const { return berthd_ == nullptr ? "" : berthd_->ReadLog(); }

  // PullImage through containerd's CRI (namespace k8s.io), as kubelet does.
  void CriPull(const std::string& image) {
    auto cri = CriRuntimeClient::Connect(containerd_->address());
    cri::PullImageRequest pull;
    pull.mutable_image()->set_image(image);
    ASSERT_OK(cri->PullImage(pull));
  }

  // CriPull, returning what the registry logged meanwhile. ASSERT_FALSE(HasFatalFailure())
  // after it.
  std::string CriPullLogged(const std::string& image) {
    const size_t log_before = shared->registry->ReadLog().size();
    CriPull(image);
    return shared->registry->ReadLog().substr(log_before);
  }

  // `ctr run --rm` of `image` in the CRI's namespace: what `cat <known file>` prints.
  std::string RunCatInCriNamespace(const std::string& image) {
    std::vector<std::string> run = {"run", "--rm"};
    for (std::string& option : RunOptions("cat")) run.push_back(std::move(option));
    run.insert(run.end(), {image, "cat", "/bin/cat", std::string(kKnownFilePath)});
    Result<CommandResult> ran = containerd_->Ctr("k8s.io", run);
    EXPECT_OK(ran);
    if (!ran) return {};
    EXPECT_EQ(ran->exit_code, 0) << ran->out << ran->err;
    return ran->out;
  }

  // Removes every image of the CRI's namespace from containerd, by every name (the CRI records
  // an image under its tag, its repo digest and its ID).
  void RemoveEveryCriImage() {
    ASSERT_OK_AND_ASSIGN(CommandResult names, containerd_->Ctr("k8s.io", {"images", "ls", "-q"}));
    std::vector<std::string> remove = {"images", "rm"};
    std::istringstream lines(names.out);
    for (std::string name; std::getline(lines, name);) {
      if (!name.empty()) remove.push_back(name);
    }
    ASSERT_OK(containerd_->Ctr("k8s.io", remove));
  }

  // The berth CLI against berthd.
  CommandResult Berth(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {BERTH_CLI_PATH, "--address", berth_address(), "--root",
                                     berth_root().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    Result<CommandResult> run = berth::testing::RunCommand(argv, berth_root().parent_path());
    EXPECT_OK(run);
    return run.value_or(CommandResult{});
  }

  // berthd's ImageFsInfo (`berth fsinfo --json`): the bytes berth uses, all filesystems summed.
  uint64_t BerthUsedBytes() {
    CommandResult fsinfo = Berth({"fsinfo", "--json"});
    EXPECT_EQ(fsinfo.exit_code, 0) << fsinfo.err;
    uint64_t used = 0;
    const std::regex field(R"("usedBytes": *([0-9]+))");
    for (std::sregex_iterator it(fsinfo.out.begin(), fsinfo.out.end(), field), end; it != end;
         ++it) {
      used += std::stoull((*it)[1].str());
    }
    return used;
  }

  // How many files under berthd's snapshot directories are the image's known file. The walk
  // goes one snapshot at a time (<root>/snapshots/<snapshotter>/<snapshots|mounts>/<id>): a
  // snapshot removed meanwhile (containerd removing a container's snapshot as the test looks:
  // renamed to rm-<id>, then deleted) ends only its own walk, never the count.
  int KnownFilesInBerth() const {
    int count = 0;
    for (const fs::path& snapshotter : Children(berth_root() / "snapshots")) {
      for (const fs::path& kind : Children(snapshotter)) {
        for (const fs::path& snapshot : Children(kind)) {
          if (snapshot.filename().string().starts_with("rm-")) continue;
          std::error_code error;
          for (auto it = fs::recursive_directory_iterator(snapshot, error);
               !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
            if (it->path().string().ends_with(kKnownFilePath)) ++count;
          }
        }
      }
    }
    return count;
  }

  // The directories directly under `directory` (none when it is gone).
  static std::vector<fs::path> Children(const fs::path& directory) {
    std::vector<fs::path> children;
    std::error_code error;
    for (auto it = fs::directory_iterator(directory, error);
         !error && it != fs::directory_iterator(); it.increment(error)) {
      std::error_code type_error;
      if (it->is_directory(type_error)) children.push_back(it->path());
    }
    return children;
  }

 private:
  void StartBerthd() {
    if (Result<void> installed = ContainerdProcess::CheckInstalled(); !installed) {
      GTEST_SKIP() << installed.error().message();
    }
    ASSERT_OK_AND_ASSIGN(berth_dir_, TempDir::Create("berthd"));
    // berthd reaches the registry under containerd's names, through hosts.toml files of its own.
    ASSERT_OK(berth::testing::WriteHostsDir(berth_dir_.path() / "hosts", BerthRegistryHosts()));
    std::ofstream(berth_dir_.path() / "config.toml")
        << fmt::format("[registry]\nconfig_path = \"{}\"\n[pull]\nsnapshotter = \"{}\"\n",
                       (berth_dir_.path() / "hosts").string(), berth_snapshotter_);
    ASSERT_NO_FATAL_FAILURE(LaunchBerthd());
  }

 protected:
  // Starts berthd on berth_dir_ (its root kept from any earlier run), logging to berthd-<n>.log,
  // and waits for its sockets.
  void LaunchBerthd() {
    ASSERT_OK_AND_ASSIGN(
        berthd_, berth::testing::StartBerthd(
                     {.config_file = berth_dir_.path() / "config.toml",
                      .root = berth_root(),
                      .state = berth_dir_.path() / "state",
                      .socket = berth_dir_.path() / "berth.sock",
                      .snapshotter_socket = snapshots_socket(),
                      .log_level = "debug",
                      .log_file = berth_dir_.path() / fmt::format("berthd-{}.log", ++launches_)}));
  }

  // kill -9 of berthd; returns once it is reaped.
  void KillBerthd() {
    ASSERT_EQ(::kill(berthd_->pid(), SIGKILL), 0);
    ASSERT_OK(berthd_->WaitForExit(std::chrono::seconds(10)));
  }

 private:
  int launches_ = 0;

  TempDir berth_dir_;
  std::unique_ptr<ChildProcess> berthd_;
};

INSTANTIATE_TEST_SUITE_P(Snapshotters, SnapshotterTest,
                         ::testing::Values(std::string_view("overlayfs"), std::string_view("berth"),
                                           std::string_view("berth_erofs")),
                         [](const auto& param_info) { return std::string(param_info.param); });

// What berth as containerd's snapshotter adds: two owners of one disk.
class BerthSnapshotterTest : public SnapshotterTest {};
INSTANTIATE_TEST_SUITE_P(Berth, BerthSnapshotterTest, ::testing::Values(std::string_view("berth")),
                         [](const auto& param_info) { return std::string(param_info.param); });

// (a) The pull goes to the loopback registry through hosts.toml, and containerd's overlayfs
// snapshotter holds the image's chain: one committed snapshot per layer, named by chain ID,
// each the parent of the next.
TEST_P(SnapshotterTest, PullFromTheLoopbackRegistryCommitsTheSnapshotChain) {
  const std::string image = ImageName("busybox", "latest");
  const size_t log_before = shared->registry->ReadLog().size();
  Pull(image);
  EXPECT_THAT(Ctr({"images", "ls", "-q"}), HasSubstr(image));
  EXPECT_THAT(shared->registry->ReadLog().substr(log_before),
              HasSubstr("/v2/busybox/manifests/latest"))
      << "containerd did not ask the loopback registry";

  std::vector<Digest> diff_ids;
  for (const imagegen::Layer& layer : shared->busybox.layers) diff_ids.push_back(layer.diff_id);
  std::vector<Digest> chain = image::ChainIds(diff_ids);
  ASSERT_EQ(chain.size(), 2u);
  std::map<std::string, std::string> parents = SnapshotParents(CtrSnapshots({"ls"}));
  EXPECT_THAT(parents, UnorderedElementsAre(std::pair(chain[0].ToString(), ""),
                                            std::pair(chain[1].ToString(), chain[0].ToString())))
      << "ctr snapshots ls should show the image's chain IDs, each the parent of the next";
}

// A Docker Hub name goes to the loopback registry too: the hosts.toml entry for docker.io (an
// explicit [host] with pull and resolve) keeps containerd from registry-1.docker.io, which this
// machine cannot reach, so a pull that tried it would fail.
TEST_F(ContainerdTest, DockerHubNamesPullFromTheLoopbackRegistry) {
  const size_t log_before = shared->registry->ReadLog().size();
  Pull("docker.io/library/busybox:latest");
  EXPECT_THAT(Ctr({"images", "ls", "-q"}), HasSubstr("docker.io/library/busybox:latest"));
  EXPECT_THAT(shared->registry->ReadLog().substr(log_before),
              HasSubstr("/v2/library/busybox/manifests/latest"));
}

// Every host containerd tries stays on loopback, also when the image is missing and it falls back
// from the [host] entry to `server`: the pull fails "not found" after asking only the loopback
// registry. (A hosts.toml with `server` alone is rejected by containerd 1.6.20, "invalid `host`
// tree", and it then asks https://<name> after a DNS lookup off the machine; this test fails so.)
TEST_F(ContainerdTest, AMissingImageIsAskedForOnlyOnLoopback) {
  const std::string loopback_host = shared->registry->host();
  for (const std::string& name :
       {ImageName("missing", "latest"), std::string("docker.io/library/missing:latest")}) {
    ASSERT_OK_AND_ASSIGN(CommandResult pull,
                         containerd_->Ctr(kNamespace, {"images", "pull", "--hosts-dir",
                                                       containerd_->hosts_dir().string(), name}));
    EXPECT_NE(pull.exit_code, 0);
    EXPECT_THAT(pull.err, HasSubstr(name + ": not found")) << pull.err;
    std::vector<std::string> hosts;
    const std::regex host_field(R"re(host="([^"]*)")re");
    for (auto it = std::sregex_iterator(pull.err.begin(), pull.err.end(), host_field);
         it != std::sregex_iterator(); ++it) {
      hosts.push_back((*it)[1]);
    }
    EXPECT_THAT(hosts, ::testing::AllOf(::testing::Not(IsEmpty()), ::testing::Each(loopback_host)))
        << pull.err;
  }
}

// (b) runc runs a container from the pulled image: it reads a file of the image, writes into its
// rootfs (the write lands in the container's own overlay upper dir, not in the image), and when
// the container is removed nothing is left: no shim, no mount, no active snapshot.
TEST_P(SnapshotterTest, RunReadsTheImageWritesItsRootfsAndLeavesNothing) {
  const std::string image = ImageName("busybox", "latest");
  Pull(image);
  const std::string id = "reader";
  std::vector<std::string> run = {"run"};
  for (std::string& option : RunOptions(id)) run.push_back(std::move(option));
  run.insert(run.end(), {image, id, "/bin/sh", "-c",
                         "cat " + std::string(kKnownFilePath) +
                             " && echo written-by-the-container > /written.txt"
                             " && cat /written.txt"});
  EXPECT_EQ(Ctr(run), std::string(kKnownFileContent) + "written-by-the-container\n");

  const std::string mounts = CtrSnapshots({"mounts", "/mnt", id});
  const fs::path upper = MountOption(mounts, "upperdir");
  ASSERT_FALSE(upper.empty()) << "no upperdir in: " << mounts;
  if (berth_snapshotter_ == "erofs") {
    EXPECT_TRUE(LowerDirsAreErofsMounts(MountOption(mounts, "lowerdir")))
        << "the container's layers are not berth's EROFS layer mounts: " << mounts;
  }
  ASSERT_OK_AND_ASSIGN(std::string written, ReadFile(upper / "written.txt"));
  EXPECT_EQ(written, "written-by-the-container\n");
  EXPECT_FALSE(fs::exists(upper / kKnownFilePath.substr(1)));

  Ctr({"containers", "rm", id});
  EXPECT_TRUE(Eventually([&] { return !fs::exists(upper); }))
      << "the container's snapshot outlived it (garbage collection)";
  EXPECT_THAT(SnapshotParents(CtrSnapshots({"ls"})),
              ::testing::Not(::testing::Contains(::testing::Key(id))));
  EXPECT_TRUE(Eventually([&] { return containerd_->Shims().empty(); }))
      << ::testing::PrintToString(containerd_->Shims());
  EXPECT_THAT(containerd_->Mounts(), IsEmpty());
  EXPECT_THAT(containerd_->Stop(), IsEmpty()) << "containerd left something to sweep";
}

// Stop() of a containerd with a running container: the task is deleted through containerd
// (its process, shim and rootfs mount go), so nothing is left for the sweep.
TEST_F(ContainerdTest, StopDeletesRunningTasks) {
  const std::string image = ImageName("busybox", "latest");
  Pull(image);
  RunSleeper(image);
  ASSERT_THAT(containerd_->Shims(), ::testing::SizeIs(1));
  ASSERT_THAT(containerd_->Mounts(), ::testing::Not(IsEmpty())) << "no rootfs mount";

  EXPECT_THAT(containerd_->Stop(), IsEmpty());
  EXPECT_THAT(containerd_->Shims(), IsEmpty());
  EXPECT_THAT(containerd_->Mounts(), IsEmpty());
}

// Restart() is a node's containerd restarting: images and a running container survive it (the
// new containerd reconnects to the shim), and a later Stop() still cleans up through containerd.
TEST_F(ContainerdTest, RestartKeepsImagesAndRunningTasks) {
  const std::string image = ImageName("busybox", "latest");
  Pull(image);
  RunSleeper(image);
  const std::vector<std::string> shims = containerd_->Shims();
  ASSERT_THAT(shims, ::testing::SizeIs(1));
  const pid_t old_pid = containerd_->pid();

  ASSERT_OK(containerd_->Restart());
  EXPECT_NE(containerd_->pid(), old_pid);
  EXPECT_THAT(Ctr({"images", "ls", "-q"}), HasSubstr(image));
  EXPECT_THAT(Ctr({"tasks", "ls"}), ::testing::ContainsRegex("sleeper +[0-9]+ +RUNNING"));
  EXPECT_EQ(containerd_->Shims(), shims) << "the shim should be the same process";
  EXPECT_THAT(containerd_->Stop(), IsEmpty());
  EXPECT_THAT(containerd_->Shims(), IsEmpty());
}

// A containerd that died (SIGKILL) cannot delete its tasks: Stop() kills the orphaned shim and
// the container under it and unmounts the rootfs itself.
TEST_F(ContainerdTest, StopSweepsTheShimsOfAKilledContainerd) {
  const std::string image = ImageName("busybox", "latest");
  Pull(image);
  const fs::path pid_file = containerd_->directory() / "sleeper.pid";
  RunSleeper(image, {"--pid-file", pid_file.string()});
  ASSERT_OK_AND_ASSIGN(std::string pid_text, ReadFile(pid_file));
  const pid_t container_pid = std::stoi(pid_text);
  ASSERT_TRUE(ProcessAlive(container_pid));
  ASSERT_THAT(containerd_->Shims(), ::testing::SizeIs(1));

  ::kill(containerd_->pid(), SIGKILL);
  std::vector<std::string> swept = containerd_->Stop();
  EXPECT_THAT(swept, ::testing::Contains(HasSubstr("shim pid")));
  EXPECT_THAT(swept, ::testing::Contains(HasSubstr("mount ")));
  EXPECT_THAT(swept, ::testing::Contains(HasSubstr("shim socket /run/containerd/s/")))
      << "the killed shim's socket should be found by containerd's naming and removed";
  EXPECT_FALSE(ProcessAlive(container_pid)) << "the container's process outlived the sweep";
  EXPECT_THAT(containerd_->Shims(), IsEmpty());
  EXPECT_THAT(containerd_->Mounts(), IsEmpty());
}

// The harness's one-line proxy snapshotter option gives a config containerd 1.6 accepts: the
// plugin is registered as a snapshotter, the CRI uses it with the snapshot annotations on, and
// calls go to its socket (nothing serves it here, so they fail saying so).
TEST(ContainerdProxySnapshotterTest, UseProxySnapshotterDeclaresItAndMakesItTheCrisSnapshotter) {
  if (Result<void> installed = ContainerdProcess::CheckInstalled(); !installed) {
    GTEST_SKIP() << installed.error().message();
  }
  ContainerdOptions options;
  const fs::path socket = "/run/berth-test-nothing-listens-here.sock";
  options.UseProxySnapshotter("berth", socket);
  ASSERT_OK_AND_ASSIGN(auto containerd, ContainerdProcess::Start(options));
  ASSERT_OK_AND_ASSIGN(CommandResult plugins, containerd->Ctr("default", {"plugins", "ls"}));
  EXPECT_THAT(plugins.out, ::testing::ContainsRegex("io.containerd.snapshotter.v1 +berth .* ok"))
      << plugins.out;
  ASSERT_OK_AND_ASSIGN(std::string log, ReadFile(containerd->log_file()));
  EXPECT_THAT(log, HasSubstr("Snapshotter:berth"));
  EXPECT_THAT(log, HasSubstr("DisableSnapshotAnnotations:false"));
  ASSERT_OK_AND_ASSIGN(
      CommandResult listed,
      containerd->Ctr("default", {"snapshots", "--snapshotter", "berth", "prepare", "k"}));
  EXPECT_NE(listed.exit_code, 0);
  EXPECT_THAT(listed.err, HasSubstr(socket.string())) << listed.err;
  EXPECT_THAT(containerd->Stop(), IsEmpty());
}

// The CRI's container log lines ("<time> stdout F <text>") as the text of each stdout line.
std::string StdoutOfCriLog(const std::string& log) {
  std::string text;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    const std::string marker = " stdout F ";
    size_t at = line.find(marker);
    if (at != std::string::npos) text += line.substr(at + marker.size()) + "\n";
  }
  return text;
}

// (c) A pod through containerd's CRI, as kubelet drives it: PullImage, a host-network
// RunPodSandbox (containerd pulls the static pause image itself), CreateContainer and
// StartContainer with runc; the container reads a file of the image and writes into its rootfs;
// its log holds its output; stop and remove leave no shim, no mount and no active snapshot.
TEST_P(SnapshotterTest, CriPodRunsAContainerThatReadsTheImageAndWritesItsRootfs) {
  auto cri = CriRuntimeClient::Connect(containerd_->address());
  const std::string image = ImageName("busybox", "latest");
  cri::PullImageRequest pull;
  pull.mutable_image()->set_image(image);
  ASSERT_OK_AND_ASSIGN(cri::PullImageResponse pulled, cri->PullImage(pull));
  EXPECT_EQ(pulled.image_ref(), shared->busybox.config.digest.ToString());

  const fs::path logs = containerd_->directory() / "pod-logs";
  fs::create_directories(logs);
  cri::PodSandboxConfig sandbox;
  sandbox.mutable_metadata()->set_name("reader-pod");
  sandbox.mutable_metadata()->set_uid("reader-pod-uid");
  sandbox.mutable_metadata()->set_namespace_(std::string(kNamespace));
  sandbox.set_log_directory(logs.string());
  sandbox.mutable_linux()->set_cgroup_parent(containerd_->cgroup_parent());
  // The node's network: no CNI needed (a pod network namespace wants a CNI result with eth0).
  sandbox.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(
      cri::NODE);
  cri::RunPodSandboxRequest run;
  *run.mutable_config() = sandbox;
  ASSERT_OK_AND_ASSIGN(cri::RunPodSandboxResponse pod, cri->RunPodSandbox(run));
  cri::PodSandboxStatusRequest pod_status;
  pod_status.set_pod_sandbox_id(pod.pod_sandbox_id());
  ASSERT_OK_AND_ASSIGN(cri::PodSandboxStatusResponse ready, cri->PodSandboxStatus(pod_status));
  EXPECT_EQ(ready.status().state(), cri::SANDBOX_READY);

  cri::CreateContainerRequest create;
  create.set_pod_sandbox_id(pod.pod_sandbox_id());
  cri::ContainerConfig* config = create.mutable_config();
  config->mutable_metadata()->set_name("reader");
  config->mutable_image()->set_image(image);
  for (const char* arg : {"/bin/sh", "-c"}) config->add_command(arg);
  config->add_command("cat " + std::string(kKnownFilePath) +
                      " && echo written-by-the-container > /written.txt && cat /written.txt");
  config->set_log_path("reader.log");
  *create.mutable_sandbox_config() = sandbox;
  ASSERT_OK_AND_ASSIGN(cri::CreateContainerResponse created, cri->CreateContainer(create));
  const std::string container_id = created.container_id();
  cri::StartContainerRequest start;
  start.set_container_id(container_id);
  ASSERT_OK(cri->StartContainer(start));

  cri::ContainerStatusRequest status_request;
  status_request.set_container_id(container_id);
  cri::ContainerStatus status;
  EXPECT_TRUE(Eventually(
      [&] {
        Result<cri::ContainerStatusResponse> answer = cri->ContainerStatus(status_request);
        if (answer) status = answer->status();
        return answer && status.state() == cri::CONTAINER_EXITED;
      },
      std::chrono::seconds(20)))
      << "the container did not exit; state " << status.state();
  EXPECT_EQ(status.exit_code(), 0) << status.reason() << ": " << status.message();
  ASSERT_OK_AND_ASSIGN(std::string log, ReadFile(logs / "reader.log"));
  EXPECT_EQ(StdoutOfCriLog(log), std::string(kKnownFileContent) + "written-by-the-container\n")
      << log;

  ASSERT_OK_AND_ASSIGN(CommandResult mounts,
                       containerd_->Ctr("k8s.io", {"snapshots", "--snapshotter", snapshotter_,
                                                   "mounts", "/mnt", container_id}));
  const fs::path upper = MountOption(mounts.out, "upperdir");
  ASSERT_FALSE(upper.empty()) << mounts.out << mounts.err;
  if (berth_snapshotter_ == "erofs") {
    EXPECT_TRUE(LowerDirsAreErofsMounts(MountOption(mounts.out, "lowerdir")))
        << "the container's layers are not berth's EROFS layer mounts: " << mounts.out;
  }
  ASSERT_OK_AND_ASSIGN(std::string written, ReadFile(upper / "written.txt"));
  EXPECT_EQ(written, "written-by-the-container\n");

  cri::StopContainerRequest stop;
  stop.set_container_id(container_id);
  EXPECT_OK(cri->StopContainer(stop));
  cri::RemoveContainerRequest remove;
  remove.set_container_id(container_id);
  EXPECT_OK(cri->RemoveContainer(remove));
  cri::StopPodSandboxRequest stop_pod;
  stop_pod.set_pod_sandbox_id(pod.pod_sandbox_id());
  EXPECT_OK(cri->StopPodSandbox(stop_pod));
  cri::RemovePodSandboxRequest remove_pod;
  remove_pod.set_pod_sandbox_id(pod.pod_sandbox_id());
  EXPECT_OK(cri->RemovePodSandbox(remove_pod));

  EXPECT_TRUE(Eventually([&] { return containerd_->Shims().empty(); }))
      << ::testing::PrintToString(containerd_->Shims());
  EXPECT_THAT(containerd_->Mounts(), IsEmpty());
  EXPECT_TRUE(Eventually([&] { return !fs::exists(upper); }));
  ASSERT_OK_AND_ASSIGN(
      CommandResult snapshots,
      containerd_->Ctr("k8s.io", {"snapshots", "--snapshotter", snapshotter_, "ls"}));
  EXPECT_THAT(snapshots.out, ::testing::Not(HasSubstr("Active"))) << snapshots.out;
  EXPECT_EQ(SnapshotParents(snapshots.out).size(), 3u)
      << "busybox's two layers and pause's one should stay: " << snapshots.out;
  EXPECT_THAT(containerd_->Stop(), IsEmpty()) << "containerd left something to sweep";
}

// Two owners, one disk: the layers containerd unpacked into berth are containerd's. berth's own
// collection keeps them (no berth image names them); when containerd removes the image, its
// garbage collection removes them through the Snapshots API, and berth's disk holds none of the
// image's files any more.
TEST_P(BerthSnapshotterTest, BerthsCollectionKeepsContainerdsLayersAndContainerdsRemovalFreesThem) {
  const std::string image = ImageName("busybox", "latest");
  Pull(image);
  const std::map<std::string, std::string> chain = SnapshotParents(CtrSnapshots({"ls"}));
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(KnownFilesInBerth(), 1) << "containerd's unpack did not land in berth's snapshots";

  CommandResult gc = Berth({"gc"});
  EXPECT_EQ(gc.exit_code, 0) << gc.out << gc.err;
  EXPECT_EQ(SnapshotParents(CtrSnapshots({"ls"})), chain) << "berth's gc took containerd's layers";
  EXPECT_EQ(KnownFilesInBerth(), 1);

  Ctr({"images", "rm", image});
  EXPECT_TRUE(Eventually([&] { return SnapshotParents(CtrSnapshots({"ls"})).empty(); },
                         std::chrono::seconds(20)))
      << "containerd's collection left " << CtrSnapshots({"ls"});
  EXPECT_EQ(KnownFilesInBerth(), 0) << "berth's disk still holds the removed image's files";
}

size_t Occurrences(const std::string& text, std::string_view what) {
  size_t count = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

// Remote snapshots: a CRI pull through containerd, which asks berth for each layer with the CRI's
// labels. berth fetches and unpacks every layer itself and hands each over to containerd;
// containerd fetches only the manifest and the config. The container runs from those layers;
// berth keeps no second copy (its staged snapshots and blobs are gone once containerd took the
// top layer), and when containerd removes the image its collection frees berth's disk.
TEST_P(BerthSnapshotterTest, CriPullHasBerthFetchEveryLayerAndTheContainerRunsFromThem) {
  const std::string image = ImageName("busybox", "latest");
  const std::string registry_log = CriPullLogged(image);
  ASSERT_FALSE(HasFatalFailure());
  for (const imagegen::Layer& layer : shared->busybox.layers) {
    EXPECT_THAT(BlobFetchers(registry_log, layer.blob.digest),
                ::testing::AllOf(::testing::Not(IsEmpty()),
                                 ::testing::Each(::testing::StartsWith("berth/"))))
        << "layer " << layer.blob.digest.ToString() << " was not fetched by berth alone:\n"
        << registry_log;
  }
  EXPECT_THAT(BlobFetchers(registry_log, shared->busybox.config.digest),
              ::testing::Contains(::testing::StartsWith("containerd/")))
      << registry_log;

  std::vector<Digest> diff_ids;
  for (const imagegen::Layer& layer : shared->busybox.layers) diff_ids.push_back(layer.diff_id);
  const std::vector<Digest> chain = image::ChainIds(diff_ids);
  ASSERT_OK_AND_ASSIGN(CommandResult listed,
                       containerd_->Ctr("k8s.io", {"snapshots", "--snapshotter", "berth", "ls"}));
  EXPECT_THAT(SnapshotParents(listed.out),
              UnorderedElementsAre(std::pair(chain[0].ToString(), ""),
                                   std::pair(chain[1].ToString(), chain[0].ToString())))
      << listed.out;
  EXPECT_EQ(Occurrences(BerthdLog(), "containerd.remote.taken"), 2u) << BerthdLog();
  EXPECT_TRUE(Eventually([&] {
    return BerthdLog().find("containerd.remote.stage.end") != std::string::npos;
  })) << "the stage did not end when containerd took the top layer:\n"
      << BerthdLog();
  EXPECT_EQ(KnownFilesInBerth(), 1) << "one copy of the image's files, containerd's";
  for (const imagegen::Layer& layer : shared->busybox.layers) {
    EXPECT_FALSE(fs::exists(berth_root() / "content" / "blobs" / "sha256" /
                            std::string(layer.blob.digest.encoded())))
        << "berth kept the blob of a layer containerd owns";
  }

  EXPECT_EQ(RunCatInCriNamespace(image), kKnownFileContent);

  // berth's own accounting counts containerd's layers (ImageFsInfo drops by about their size
  // when containerd removes them; the tars' sizes, headers included, are an upper bound), and
  // finds nothing wrong with them.
  uint64_t unpacked = 0;
  for (const imagegen::Layer& layer : shared->busybox.layers) unpacked += layer.uncompressed_size;
  const uint64_t used_with_layers = BerthUsedBytes();
  CommandResult check = Berth({"check"});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_THAT(check.out, HasSubstr("clean"));

  RemoveEveryCriImage();
  EXPECT_TRUE(Eventually([&] { return KnownFilesInBerth() == 0; }, std::chrono::seconds(20)))
      << "containerd's collection did not free the layers berth handed over";
  EXPECT_GE(used_with_layers - std::min(used_with_layers, BerthUsedBytes()), unpacked / 2)
      << "ImageFsInfo did not count the layers containerd owned: " << used_with_layers
      << " bytes with them";
}

// containerd restarting loses nothing berth handed over: the chain, the image and a new
// container from it are all there after the restart, and berth still has one copy of the files.
TEST_P(BerthSnapshotterTest, ContainerdRestartingKeepsTheLayersBerthHandedOver) {
  const std::string image = ImageName("busybox", "latest");
  ASSERT_NO_FATAL_FAILURE(CriPull(image));
  auto chain = [&] {
    Result<CommandResult> listed =
        containerd_->Ctr("k8s.io", {"snapshots", "--snapshotter", "berth", "ls"});
    return listed ? SnapshotParents(listed->out) : std::map<std::string, std::string>{};
  };
  const std::map<std::string, std::string> before = chain();
  ASSERT_EQ(before.size(), 2u);

  ASSERT_OK(containerd_->Restart());
  EXPECT_EQ(chain(), before);
  EXPECT_EQ(RunCatInCriNamespace(image), kKnownFileContent);
  EXPECT_EQ(KnownFilesInBerth(), 1);
}

// Fallback: berth cannot reach the registry (its hosts.toml names a closed port), so it hands
// over nothing and containerd fetches and unpacks every layer itself into berth's snapshots. The
// pull and the container work all the same.
class BerthFallbackTest : public SnapshotterTest {
 protected:
  std::vector<RegistryHost> BerthRegistryHosts() const override {
    Result<uint16_t> closed = berth::testing::FreeLoopbackPort();
    EXPECT_OK(closed);
    return {{std::string(kRegistryHost), fmt::format("http://127.0.0.1:{}", closed.value_or(1))}};
  }
};
INSTANTIATE_TEST_SUITE_P(Berth, BerthFallbackTest, ::testing::Values(std::string_view("berth")),
                         [](const auto& param_info) { return std::string(param_info.param); });

TEST_P(BerthFallbackTest, LayersBerthCannotFetchAreFetchedByContainerdAndTheContainerRuns) {
  const std::string image = ImageName("busybox", "latest");
  const std::string registry_log = CriPullLogged(image);
  ASSERT_FALSE(HasFatalFailure());
  for (const imagegen::Layer& layer : shared->busybox.layers) {
    EXPECT_THAT(BlobFetchers(registry_log, layer.blob.digest),
                ::testing::Contains(::testing::StartsWith("containerd/")))
        << registry_log;
  }
  EXPECT_EQ(Occurrences(BerthdLog(), "containerd.remote.fallback"), shared->busybox.layers.size())
      << "each layer should fall back";
  EXPECT_EQ(Occurrences(BerthdLog(), "containerd.remote.stage "), 1u)
      << "after the image's stage failed, berth should not try again for each layer";
  EXPECT_EQ(Occurrences(BerthdLog(), "containerd.remote.taken"), 0u);
  EXPECT_EQ(RunCatInCriNamespace(image), kKnownFileContent);
  EXPECT_EQ(KnownFilesInBerth(), 1) << "containerd's unpack did not land in berth's snapshots";
}

// Entries directly under `directory` (0 when it does not exist).
size_t EntriesIn(const fs::path& directory) {
  std::error_code error;
  size_t count = 0;
  for (auto it = fs::directory_iterator(directory, error); !error && it != fs::directory_iterator();
       it.increment(error)) {
    ++count;
  }
  return count;
}

// berthd dies (kill -9) while a CRI pull through containerd waits for a layer berth is fetching
// (its download is held back by a proxy). That pull fails or completes, but nothing berth staged
// is ever visible to containerd; berthd comes back on the same root, drops what the dead stage
// held, and the next pull works with the layers berth fetches. Once containerd removes the image,
// both collections leave berth's disk empty: no snapshot, no blob.
class BerthCrashTest : public SnapshotterTest {
 protected:
  static void SetUpTestSuite() {
    SnapshotterTest::SetUpTestSuite();
    if (shared == nullptr) return;
    Result<std::unique_ptr<berth::testing::FaultProxy>> started =
        berth::testing::FaultProxy::Start(shared->registry->host());
    if (!started) return;
    proxy = std::move(*started).release();
    (void)proxy->AddRule({.method = "GET",
                          .target_contains = shared->busybox.layers[0].blob.digest.ToString(),
                          .action = berth::testing::FaultAction::Delay(kHeldBack)});
  }
  static void TearDownTestSuite() {
    delete proxy;
    proxy = nullptr;
    SnapshotterTest::TearDownTestSuite();
  }

  // berthd reaches the registry through the proxy that holds the first layer back.
  std::vector<RegistryHost> BerthRegistryHosts() const override {
    EXPECT_NE(proxy, nullptr) << "the proxy did not start";
    if (proxy == nullptr) return RegistryHosts();
    return {{std::string(kRegistryHost), proxy->url()}};
  }

  static constexpr std::chrono::milliseconds kHeldBack{3000};
  static inline berth::testing::FaultProxy* proxy = nullptr;
};
INSTANTIATE_TEST_SUITE_P(Berth, BerthCrashTest, ::testing::Values(std::string_view("berth")),
                         [](const auto& param_info) { return std::string(param_info.param); });

TEST_P(BerthCrashTest, KillingBerthdDuringACriPullLosesNothingAndTheNextPullWorks) {
  const std::string image = ImageName("busybox", "latest");
  auto first = std::async(std::launch::async, [&] {
    auto cri = CriRuntimeClient::Connect(containerd_->address());
    cri::PullImageRequest pull;
    pull.mutable_image()->set_image(image);
    return cri->PullImage(pull);
  });
  ASSERT_TRUE(
      Eventually([&] { return BerthdLog().find("containerd.remote.stage ") != std::string::npos; },
                 std::chrono::seconds(20)))
      << BerthdLog();
  ASSERT_NO_FATAL_FAILURE(KillBerthd());
  // The pull may fail (containerd lost its snapshotter mid-layer) or complete; either is fine.
  Result<cri::PullImageResponse> first_result = first.get();
  ::testing::Test::RecordProperty("first_pull", first_result ? "completed" : "failed");

  ASSERT_NO_FATAL_FAILURE(LaunchBerthd());
  EXPECT_THAT(BerthdLog(), HasSubstr("gc.done")) << "berthd's start-up did not collect";
  // containerd's calls fail (UNAVAILABLE) until its connection to berthd is back (gRPC's
  // reconnect backoff), then work again.
  ASSERT_OK(containerd_->WaitForSnapshotter("k8s.io", "berth"));
  // containerd sees only committed layers of the image, each on the one below.
  std::vector<Digest> diff_ids;
  for (const imagegen::Layer& layer : shared->busybox.layers) diff_ids.push_back(layer.diff_id);
  const std::vector<Digest> chain = image::ChainIds(diff_ids);
  ASSERT_OK_AND_ASSIGN(CommandResult listed,
                       containerd_->Ctr("k8s.io", {"snapshots", "--snapshotter", "berth", "ls"}));
  for (const auto& [name, parent] : SnapshotParents(listed.out)) {
    if (name.find("extract-") != std::string::npos) continue;  // containerd's own, unfinished
    EXPECT_TRUE(name == chain[0].ToString() || name == chain[1].ToString()) << listed.out;
  }

  ASSERT_NO_FATAL_FAILURE(CriPull(image));
  EXPECT_EQ(RunCatInCriNamespace(image), kKnownFileContent);
  EXPECT_THAT(BerthdLog(), HasSubstr("containerd.remote.taken"));

  RemoveEveryCriImage();
  const fs::path snapshots = berth_root() / "snapshots" / "overlayfs" / "snapshots";
  EXPECT_TRUE(Eventually([&] { return EntriesIn(snapshots) == 0; }, std::chrono::seconds(20)))
      << EntriesIn(snapshots) << " snapshot directories left in " << snapshots;
  EXPECT_EQ(EntriesIn(berth_root() / "content" / "blobs" / "sha256"), 0u)
      << "berth kept blobs of layers containerd owns";
}

}  // namespace
}  // namespace berth::containerd_test
