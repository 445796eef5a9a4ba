// Erofs-specific behaviour: layer mounts (counted, removed, rebuilt on reopen, through a loop
// device when forced), whiteouts across a chain of images, and the conversion of an active
// snapshot's upper directory into a layer image. The lifecycle itself is covered by the
// conformance suite. Needs root (mounts).
#include "berth/snapshot/erofs_snapshotter.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>

#include "berth/snapshot/snapshot_test_util.h"
#include "testing/result_matchers.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"

namespace berth::snapshot {
namespace {

namespace fs = std::filesystem;
using testing::MountSkipReason;
using testing::ReadTestFile;
using testing::WriteTestFile;

// How a tree looks: relative path → type, mode, owner, size and contents or target, and user.*
// xattrs.
using TreeListing = std::map<std::string, std::string>;

std::string DescribeNode(const fs::path& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return "<unreadable>";
  std::string text = fmt::format("mode={:o} uid={} gid={}", st.st_mode, st.st_uid, st.st_gid);
  if (S_ISREG(st.st_mode)) text += " data=" + ReadTestFile(path);
  if (S_ISLNK(st.st_mode)) text += " target=" + fs::read_symlink(path).string();
  if (S_ISREG(st.st_mode)) text += fmt::format(" nlink={}", st.st_nlink);
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    text += fmt::format(" dev={}:{}", major(st.st_rdev), minor(st.st_rdev));
  }
  char value[256];
  ssize_t size = ::lgetxattr(path.c_str(), "user.test", value, sizeof(value));
  if (size >= 0) text += " user.test=" + std::string(value, static_cast<size_t>(size));
  return text;
}

TreeListing ListTree(const fs::path& root) {
  TreeListing listing;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    listing[fs::relative(it->path(), root).string()] = DescribeNode(it->path());
  }
  return listing;
}

bool IsMountPoint(const fs::path& path) {
  struct stat st, parent;
  return ::stat(path.c_str(), &st) == 0 && ::stat(path.parent_path().c_str(), &parent) == 0 &&
         st.st_dev != parent.st_dev;
}

// The mount source /proc/self/mountinfo reports for `target` ("" when not mounted).
std::string MountSource(const fs::path& target) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  std::string source;
  while (std::getline(mountinfo, line)) {
    std::istringstream fields(line);
    std::string id, parent, device, root, point;
    fields >> id >> parent >> device >> root >> point;
    if (point != target.string()) continue;
    size_t dash = line.find(" - ");
    std::istringstream tail(line.substr(dash + 3));
    std::string type;
    tail >> type >> source;
  }
  return source;
}

class ErofsSnapshotterTest : public ::testing::TestWithParam<LayerMountMethod> {
 protected:
  void SetUp() override {
    std::string reason = MountSkipReason();
    if (reason.empty() && !ErofsSnapshotter::KernelSupportsErofs()) reason = "no erofs/overlay";
    if (!reason.empty()) GTEST_SKIP() << reason;
    auto dir = berth::testing::TempDir::Create("erofs-snapshotter");
    ASSERT_OK(dir);
    dir_.emplace(std::move(*dir));
    ASSERT_NO_FATAL_FAILURE(Open());
  }

  void TearDown() override {
    if (dir_ && !damaged_images_) ExpectEveryLayerImageClean();
    for (const fs::path& target : targets_) (void)UnmountAll(target);
    snapshotter_.reset();
  }

  // Every layer image the test made passes erofs-utils' fsck.erofs, each file's data read
  // through (tests that damage an image on purpose set damaged_images_).
  void ExpectEveryLayerImageClean() {
    std::error_code error;
    for (const auto& entry : fs::recursive_directory_iterator(dir_->path() / "root", error)) {
      if (entry.path().filename() != "layer.erofs" || !entry.is_regular_file()) continue;
      auto fsck = berth::testing::RunCommand(
          {"/usr/bin/fsck.erofs", "--extract", entry.path().string()}, dir_->path());
      ASSERT_OK(fsck);
      EXPECT_EQ(fsck->exit_code, 0) << entry.path() << ": " << fsck->out << fsck->err;
    }
  }

  void Open() {
    ErofsSnapshotterOptions options;
    options.root = dir_->path() / "root";
    options.sync = Durability::kNone;
    options.layer_mounts = GetParam();
    auto opened = ErofsSnapshotter::Open(options);
    ASSERT_OK(opened);
    snapshotter_ = std::move(*opened);
  }

  int64_t Id(std::string_view key) {
    auto id = snapshotter_->IdForTest(key);
    EXPECT_OK(id);
    return id ? *id : 0;
  }

  fs::path NewTarget() {
    fs::path target = dir_->path() / fmt::format("mnt{}", targets_.size());
    fs::create_directories(target);
    targets_.push_back(target);
    return target;
  }

  std::optional<ScopedMount> MountKey(std::string_view key) {
    auto mounts = snapshotter_->Mounts(key);
    EXPECT_OK(mounts);
    if (!mounts) return std::nullopt;
    auto mounted = ScopedMount::Create(*mounts, NewTarget());
    EXPECT_OK(mounted);
    if (!mounted) return std::nullopt;
    return std::move(*mounted);
  }

  // Prepares `name`-active on `parent`, lets `write` fill its apply target, commits as `name`.
  template <typename Write>
  void CommitLayer(const std::string& name, const std::string& parent, Write write) {
    ASSERT_OK(snapshotter_->Prepare(name + "-active", parent, {}));
    auto target = snapshotter_->GetApplyTarget(name + "-active");
    ASSERT_OK(target);
    ASSERT_NO_FATAL_FAILURE(write(target->directory));
    ASSERT_OK(snapshotter_->Commit(name, name + "-active", {}));
  }

  std::optional<berth::testing::TempDir> dir_;
  std::unique_ptr<ErofsSnapshotter> snapshotter_;
  std::vector<fs::path> targets_;
  bool damaged_images_ = false;
};

void Whiteout(const fs::path& path) {
  fs::create_directories(path.parent_path());
  ASSERT_EQ(::mknod(path.c_str(), S_IFCHR, makedev(0, 0)), 0) << path << std::strerror(errno);
}

TEST_P(ErofsSnapshotterTest, CommittedLayerIsOneImage) {
  ASSERT_NO_FATAL_FAILURE(CommitLayer(
      "base", "", [](const fs::path& dir) { WriteTestFile(dir / "etc/hosts", "hosts"); }));
  const fs::path snapshot_dir = snapshotter_->SnapshotDir(Id("base"));
  EXPECT_TRUE(fs::is_regular_file(snapshot_dir / "layer.erofs"));
  EXPECT_TRUE(fs::is_empty(snapshot_dir / "fs"));
  EXPECT_FALSE(fs::exists(snapshot_dir / "work"));
  struct stat st;
  ASSERT_EQ(::stat((snapshot_dir / "layer.erofs").c_str(), &st), 0);
  auto usage = snapshotter_->GetUsage("base");
  ASSERT_OK(usage);
  EXPECT_EQ(usage->size, st.st_blocks * 512);
  EXPECT_EQ(usage->inodes, 3);  // /, etc, etc/hosts
}

TEST_P(ErofsSnapshotterTest, LayerMountsAreCountedAndRemoved) {
  ASSERT_NO_FATAL_FAILURE(
      CommitLayer("base", "", [](const fs::path& dir) { WriteTestFile(dir / "a", "a"); }));
  ASSERT_NO_FATAL_FAILURE(
      CommitLayer("app", "base", [](const fs::path& dir) { WriteTestFile(dir / "b", "b"); }));
  const int64_t base = Id("base");
  const int64_t app = Id("app");
  EXPECT_EQ(snapshotter_->LayerMountUsersForTest(base), 0);
  EXPECT_FALSE(fs::exists(snapshotter_->LayerMountPoint(base)));

  ASSERT_OK(snapshotter_->Prepare("container", "app", {}));
  EXPECT_EQ(snapshotter_->LayerMountUsersForTest(base), 1);
  EXPECT_EQ(snapshotter_->LayerMountUsersForTest(app), 1);
  EXPECT_TRUE(IsMountPoint(snapshotter_->LayerMountPoint(base)));
  EXPECT_TRUE(IsMountPoint(snapshotter_->LayerMountPoint(app)));
  const std::string source = MountSource(snapshotter_->LayerMountPoint(app));
  if (GetParam() == LayerMountMethod::kLoopDevice) {
    EXPECT_THAT(source, ::testing::StartsWith("/dev/loop"));
  } else {
    EXPECT_THAT(source, ::testing::EndsWith("layer.erofs"));
  }

  ASSERT_OK(snapshotter_->View("view", "base", {}));
  EXPECT_EQ(snapshotter_->LayerMountUsersForTest(base), 2);
  ASSERT_OK(snapshotter_->Remove("container"));
  EXPECT_EQ(snapshotter_->LayerMountUsersForTest(base), 1);
  EXPECT_EQ(snapshotter_->LayerMountUsersForTest(app), 0);
  EXPECT_FALSE(fs::exists(snapshotter_->LayerMountPoint(app)));
  EXPECT_TRUE(IsMountPoint(snapshotter_->LayerMountPoint(base)));
  ASSERT_OK(snapshotter_->Remove("view"));
  EXPECT_EQ(snapshotter_->LayerMountUsersForTest(base), 0);
  EXPECT_FALSE(fs::exists(snapshotter_->LayerMountPoint(base)));

  // Committing an active snapshot releases its layers too.
  ASSERT_OK(snapshotter_->Prepare("top-active", "app", {}));
  EXPECT_EQ(snapshotter_->LayerMountUsersForTest(app), 1);
  ASSERT_OK(snapshotter_->Commit("top", "top-active", {}));
  EXPECT_EQ(snapshotter_->LayerMountUsersForTest(app), 0);
  EXPECT_FALSE(fs::exists(snapshotter_->LayerMountPoint(app)));
}

TEST_P(ErofsSnapshotterTest, ReopenRebuildsNeededMountsAndDropsOthers) {
  ASSERT_NO_FATAL_FAILURE(
      CommitLayer("base", "", [](const fs::path& dir) { WriteTestFile(dir / "a", "a"); }));
  ASSERT_NO_FATAL_FAILURE(
      CommitLayer("app", "base", [](const fs::path& dir) { WriteTestFile(dir / "b", "b"); }));
  ASSERT_OK(snapshotter_->Prepare("container", "app", {}));
  ASSERT_OK(snapshotter_->View("view", "base", {}));
  const int64_t base = Id("base");
  const int64_t app = Id("app");
  const fs::path mounts = dir_->path() / "root/mounts";

  // A closed snapshotter leaves no layer mounts.
  snapshotter_.reset();
  EXPECT_FALSE(IsMountPoint(mounts / std::to_string(base)));
  EXPECT_FALSE(IsMountPoint(mounts / std::to_string(app)));
  // What a killed process could leave: a mount nothing needs, and a needed one still mounted.
  fs::create_directories(mounts / "999");
  ASSERT_EQ(::mount("tmpfs", (mounts / "999").c_str(), "tmpfs", 0, nullptr), 0);
  fs::create_directories(mounts / std::to_string(app));
  ASSERT_EQ(::mount("tmpfs", (mounts / std::to_string(app)).c_str(), "tmpfs", 0, nullptr), 0);

  ASSERT_NO_FATAL_FAILURE(Open());
  EXPECT_FALSE(fs::exists(mounts / "999"));
  EXPECT_EQ(snapshotter_->LayerMountUsersForTest(base), 2);
  EXPECT_EQ(snapshotter_->LayerMountUsersForTest(app), 1);
  EXPECT_TRUE(IsMountPoint(mounts / std::to_string(base)));
  EXPECT_EQ(MountSource(mounts / std::to_string(app)), "tmpfs");  // reused, as found
  (void)::umount2((mounts / std::to_string(app)).c_str(), MNT_DETACH);

  std::optional<ScopedMount> mounted = MountKey("view");
  ASSERT_TRUE(mounted);
  EXPECT_EQ(ReadTestFile(mounted->target() / "a"), "a");
}

TEST_P(ErofsSnapshotterTest, ReopenEmptiesWhatACrashAfterCommitLeftOfTheUpperTree) {
  ASSERT_NO_FATAL_FAILURE(
      CommitLayer("base", "", [](const fs::path& dir) { WriteTestFile(dir / "a", "a"); }));
  const fs::path snapshot_dir = snapshotter_->SnapshotDir(Id("base"));
  snapshotter_.reset();
  // What a kill between the commit and the clean-up leaves: the converted files and work/.
  WriteTestFile(snapshot_dir / "fs/a", "a");
  fs::create_directories(snapshot_dir / "work/work");

  ASSERT_NO_FATAL_FAILURE(Open());
  EXPECT_TRUE(fs::is_empty(snapshot_dir / "fs"));
  EXPECT_FALSE(fs::exists(snapshot_dir / "work"));
  ASSERT_OK(snapshotter_->View("view", "base", {}));
  std::optional<ScopedMount> mounted = MountKey("view");
  ASSERT_TRUE(mounted);
  EXPECT_EQ(ReadTestFile(mounted->target() / "a"), "a");
}

TEST_P(ErofsSnapshotterTest, ADamagedLayerImageIsReportedAndDoesNotKeepItClosed) {
  ASSERT_NO_FATAL_FAILURE(
      CommitLayer("base", "", [](const fs::path& dir) { WriteTestFile(dir / "a", "a"); }));
  ASSERT_NO_FATAL_FAILURE(
      CommitLayer("app", "base", [](const fs::path& dir) { WriteTestFile(dir / "b", "b"); }));
  ASSERT_OK(snapshotter_->Prepare("container", "app", {}));
  auto missing = snapshotter_->FindMissing();
  ASSERT_OK(missing);
  EXPECT_THAT(*missing, ::testing::IsEmpty());
  const fs::path image = snapshotter_->SnapshotDir(Id("app")) / "layer.erofs";
  snapshotter_.reset();
  damaged_images_ = true;
  fs::resize_file(image, 2048);  // truncated behind the snapshotter's back: the superblock stays

  ASSERT_NO_FATAL_FAILURE(Open());
  missing = snapshotter_->FindMissing();
  ASSERT_OK(missing);
  EXPECT_THAT(*missing, ::testing::ElementsAre("app"));
  EXPECT_THAT(snapshotter_->View("again", "app", {}),
              berth::testing::FailsWith(ErrorCode::kDataLoss, "truncated"));
  // Removed altogether, too.
  fs::remove(image);
  missing = snapshotter_->FindMissing();
  ASSERT_OK(missing);
  EXPECT_THAT(*missing, ::testing::ElementsAre("app"));
  ASSERT_OK(snapshotter_->Remove("container"));
}

TEST_P(ErofsSnapshotterTest, ChainOfThreeLayersShowsWhiteoutsAndOpaqueDirectories) {
  ASSERT_NO_FATAL_FAILURE(CommitLayer("l1", "", [](const fs::path& dir) {
    WriteTestFile(dir / "a/x", "x");
    WriteTestFile(dir / "a/y", "y");
    WriteTestFile(dir / "d/old", "old");
    WriteTestFile(dir / "keep", "keep");
  }));
  ASSERT_NO_FATAL_FAILURE(CommitLayer("l2", "l1", [](const fs::path& dir) {
    Whiteout(dir / "a/x");
    WriteTestFile(dir / "d/new", "new");
    ASSERT_EQ(::setxattr((dir / "d").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  }));
  ASSERT_NO_FATAL_FAILURE(CommitLayer("l3", "l2", [](const fs::path& dir) {
    WriteTestFile(dir / "a/z", "z");
    Whiteout(dir / "keep");
  }));
  ASSERT_OK(snapshotter_->View("view", "l3", {}));
  ASSERT_OK(snapshotter_->Prepare("container", "l3", {}));
  for (const char* key : {"view", "container"}) {
    std::optional<ScopedMount> mounted = MountKey(key);
    ASSERT_TRUE(mounted);
    TreeListing listing = ListTree(mounted->target());
    std::set<std::string> paths;
    for (const auto& [path, description] : listing) paths.insert(path);
    EXPECT_EQ(paths, (std::set<std::string>{"a", "a/y", "a/z", "d", "d/new"})) << key;
    EXPECT_EQ(ReadTestFile(mounted->target() / "d/new"), "new");
  }
  // The middle layer alone still shows what l3 deleted.
  ASSERT_OK(snapshotter_->View("view-l2", "l2", {}));
  std::optional<ScopedMount> mounted = MountKey("view-l2");
  ASSERT_TRUE(mounted);
  EXPECT_EQ(ReadTestFile(mounted->target() / "keep"), "keep");
  EXPECT_FALSE(fs::exists(mounted->target() / "a/x"));
}

TEST_P(ErofsSnapshotterTest, CommitOfAContainersChangesShowsTheSameTree) {
  ASSERT_NO_FATAL_FAILURE(CommitLayer("base", "", [](const fs::path& dir) {
    WriteTestFile(dir / "etc/passwd", "root");
    WriteTestFile(dir / "etc/group", "wheel");
    WriteTestFile(dir / "opt/dir/x", "x");
    WriteTestFile(dir / "bin/sh", "shell", 0755);
  }));
  ASSERT_OK(snapshotter_->Prepare("container", "base", {}));
  TreeListing before;
  {
    std::optional<ScopedMount> mounted = MountKey("container");
    ASSERT_TRUE(mounted);
    const fs::path rootfs = mounted->target();
    ASSERT_TRUE(fs::remove(rootfs / "etc/passwd"));  // a whiteout in the upper directory
    ASSERT_EQ(fs::remove_all(rootfs / "opt/dir"), 2u);
    ASSERT_NO_FATAL_FAILURE(WriteTestFile(rootfs / "opt/dir/z", "z"));  // opaque directory
    ASSERT_NO_FATAL_FAILURE(WriteTestFile(rootfs / "etc/group", "staff"));
    ASSERT_NO_FATAL_FAILURE(WriteTestFile(rootfs / "new/file", "new", 0600));
    ASSERT_EQ(::link((rootfs / "new/file").c_str(), (rootfs / "new/link").c_str()), 0);
    ASSERT_EQ(::symlink("../bin/sh", (rootfs / "new/sh").c_str()), 0);
    ASSERT_EQ(::mkfifo((rootfs / "new/fifo").c_str(), 0640), 0);
    ASSERT_EQ(::mknod((rootfs / "new/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
    ASSERT_EQ(::lchown((rootfs / "new/file").c_str(), 70000, 70001), 0);
    ASSERT_EQ(::setxattr((rootfs / "new/file").c_str(), "user.test", "v", 1, 0), 0)
        << std::strerror(errno);
    before = ListTree(rootfs);
    ASSERT_OK(mounted->Release());
  }
  ASSERT_OK(snapshotter_->Commit("layer", "container", {}));
  ASSERT_OK(snapshotter_->View("view", "layer", {}));
  std::optional<ScopedMount> mounted = MountKey("view");
  ASSERT_TRUE(mounted);
  TreeListing after = ListTree(mounted->target());
  EXPECT_EQ(after, before);
  EXPECT_EQ(after.count("etc/passwd"), 0u);
  EXPECT_EQ(after.count("opt/dir/x"), 0u);
}

INSTANTIATE_TEST_SUITE_P(Mounts, ErofsSnapshotterTest,
                         ::testing::Values(LayerMountMethod::kAuto, LayerMountMethod::kLoopDevice),
                         [](const ::testing::TestParamInfo<LayerMountMethod>& param_info) {
                           return param_info.param == LayerMountMethod::kAuto ? "FileBacked"
                                                                              : "Loop";
                         });

}  // namespace
}  // namespace berth::snapshot
