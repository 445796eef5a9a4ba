// File: berth/snapshot/snapshotter_conformance.h
//
// The conformance suite every on-disk Snapshotter must pass, modelled on containerd's
// core/snapshots/testsuite: real mounts, real files, every lifecycle step and every misuse.
// Instantiate it once per implementation with a factory type:
//
//   struct MyFactory {
//     static std::string SkipReason();   // "" when the implementation can run here
//     // T derives from both Snapshotter and Cleaner (LocalSnapshotter, or a client of a
//     // snapshotter served elsewhere that keeps `options.root`).
//     // The crash tests call it in a forked child, whose snapshotter must _exit at
//     // options.crash_point_for_test.
//     static Result<std::unique_ptr<T>> Open(const LocalSnapshotterOptions& options);
//     // Whether T implements Rename (a client of containerd's API cannot: kUnimplemented).
//     static constexpr bool kRenames = true;
//     // Optional: why the crash tests (which fork a child that opens T) cannot run for T. A
//     // factory whose Open starts gRPC says so: gRPC does not survive a fork.
//     static std::string CrashSkipReason();
//     // Optional: false when a committed layer is stored in another form than the active
//     // snapshot's tree (an EROFS image), so its usage is not the same number; default true.
//     static constexpr bool kCommitKeepsUsage = true;
//   };
//   INSTANTIATE_TYPED_TEST_SUITE_P(Mine, SnapshotterConformance, MyFactory);
//
// Tests skip (GTEST_SKIP with the reason) when SkipReason() is not empty, e.g. without root.
// Every mount is made through ScopedMount, so it is undone even when an assertion fails, and the
// fixture unmounts anything left under its mount points before deleting the temp directory.
// Include this header from exactly one test source per binary.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "berth/snapshot/local_snapshotter.h"
#include "berth/snapshot/mount.h"
#include "berth/snapshot/snapshot_test_util.h"
#include "berth/snapshot/snapshotter.h"
#include "testing/result_matchers.h"
#include "testing/temp_dir.h"

namespace berth::snapshot::testing {

using ::berth::testing::FailsWith;

namespace fs = std::filesystem;

using Files = std::map<std::string, std::string>;

template <typename Factory>
class SnapshotterConformance : public ::testing::Test {
 protected:
  // What Factory::Open makes: a Snapshotter and a Cleaner.
  using Opened = typename decltype(Factory::Open(
      std::declval<const LocalSnapshotterOptions&>()))::value_type::element_type;

  void SetUp() override {
    std::string reason = Factory::SkipReason();
    if (!reason.empty()) GTEST_SKIP() << reason;
    auto dir = berth::testing::TempDir::Create("snapshot");
    ASSERT_OK(dir);
    dir_.emplace(std::move(*dir));
    ASSERT_NO_FATAL_FAILURE(Open());
  }

  void TearDown() override {
    snapshotter_.reset();
    // Belt and braces: a mount that escaped its ScopedMount must not make TempDir delete the
    // contents of a snapshot through it, nor leak into later tests.
    for (const fs::path& target : targets_) (void)UnmountAll(target);
  }

  LocalSnapshotterOptions Options() const { return {.root = root(), .sync = Durability::kNone}; }

  void Open(LocalSnapshotterOptions options) {
    auto opened = Factory::Open(options);
    ASSERT_OK(opened);
    snapshotter_ = std::move(*opened);
  }
  void Open() { Open(Options()); }

  void Reopen() {
    snapshotter_.reset();
    ASSERT_NO_FATAL_FAILURE(Open());
  }

  Snapshotter& sn() { return *snapshotter_; }
  Cleaner& cleaner() { return *snapshotter_; }
  fs::path root() const { return dir_->path() / "root"; }

  fs::path NewTarget() {
    fs::path target = dir_->path() / ("mnt" + std::to_string(targets_.size()));
    fs::create_directories(target);
    targets_.push_back(target);
    return target;
  }

  // Mounts `key` on a fresh directory; the mount lives as long as the returned ScopedMount.
  std::optional<ScopedMount> MountKey(std::string_view key) {
    auto mounts = sn().Mounts(key);
    EXPECT_OK(mounts);
    if (!mounts) return std::nullopt;
    auto mounted = ScopedMount::Create(*mounts, NewTarget());
    EXPECT_OK(mounted);
    if (!mounted) return std::nullopt;
    return std::move(*mounted);
  }

  // Prepares `key` on `parent`, writes `files` through its mounts, unmounts and commits it as
  // `name`.
  void CommitLayer(const std::string& name, const std::string& parent, const Files& files) {
    const std::string key = name + "-active";
    auto prepared = sn().Prepare(key, parent);
    ASSERT_OK(prepared);
    {
      std::optional<ScopedMount> mounted = MountKey(key);
      ASSERT_TRUE(mounted);
      for (const auto& [path, content] : files) {
        ASSERT_NO_FATAL_FAILURE(WriteTestFile(mounted->target() / path, content));
      }
      auto released = mounted->Release();
      ASSERT_OK(released);
    }
    auto committed = sn().Commit(name, key);
    ASSERT_OK(committed);
  }

  // Files and directories visible under `key`'s mounts (relative paths), symlinks not followed.
  std::set<std::string> ListKey(std::string_view key) {
    std::set<std::string> paths;
    std::optional<ScopedMount> mounted = MountKey(key);
    EXPECT_TRUE(mounted);
    if (!mounted) return paths;
    for (auto it = fs::recursive_directory_iterator(mounted->target());
         it != fs::recursive_directory_iterator(); ++it) {
      paths.insert(fs::relative(it->path(), mounted->target()).string());
    }
    return paths;
  }

  std::optional<berth::testing::TempDir> dir_;
  std::unique_ptr<Opened> snapshotter_;
  std::vector<fs::path> targets_;
};

TYPED_TEST_SUITE_P(SnapshotterConformance);

#define BERTH_EXPECT_CODE(expr, expected_code)                                                  \
  do {                                                                                          \
    auto berth_result = (expr);                                                                 \
    ASSERT_FALSE(berth_result) << #expr << " unexpectedly succeeded";                           \
    EXPECT_EQ(berth_result.error().code(), (expected_code)) << berth_result.error().ToString(); \
  } while (false)

TYPED_TEST_P(SnapshotterConformance, PrepareCommitAndViewStackLayers) {
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer(
      "base", "", {{"etc/os-release", "base"}, {"bin/sh", "shell"}, {"shared", "v1"}}));
  ASSERT_NO_FATAL_FAILURE(
      this->CommitLayer("app", "base", {{"app/main", "app"}, {"shared", "v2"}}));

  // A container on top of both layers sees the union, the upper layer winning.
  ASSERT_TRUE(this->sn().Prepare("container", "app"));
  {
    std::optional<ScopedMount> mounted = this->MountKey("container");
    ASSERT_TRUE(mounted);
    const fs::path rootfs = mounted->target();
    EXPECT_EQ(ReadTestFile(rootfs / "etc/os-release"), "base");
    EXPECT_EQ(ReadTestFile(rootfs / "app/main"), "app");
    EXPECT_EQ(ReadTestFile(rootfs / "shared"), "v2");
    ASSERT_NO_FATAL_FAILURE(WriteTestFile(rootfs / "shared", "container"));
    ASSERT_NO_FATAL_FAILURE(WriteTestFile(rootfs / "tmp/scratch", "x"));
    EXPECT_EQ(ReadTestFile(rootfs / "shared"), "container");
  }

  // Committed layers did not change underneath: a view of each shows its own state.
  ASSERT_TRUE(this->sn().View("view-base", "base"));
  ASSERT_TRUE(this->sn().View("view-app", "app"));
  EXPECT_EQ(this->ListKey("view-base"),
            (std::set<std::string>{"bin", "bin/sh", "etc", "etc/os-release", "shared"}));
  {
    std::optional<ScopedMount> mounted = this->MountKey("view-app");
    ASSERT_TRUE(mounted);
    EXPECT_EQ(ReadTestFile(mounted->target() / "shared"), "v2");
    EXPECT_EQ(ReadTestFile(mounted->target() / "bin/sh"), "shell");
    EXPECT_FALSE(Exists(mounted->target() / "tmp/scratch"));
    // Views are read-only.
    std::FILE* file = std::fopen((mounted->target() / "new").c_str(), "w");
    const int open_errno = errno;
    EXPECT_EQ(file, nullptr);
    EXPECT_EQ(open_errno, EROFS);
    if (file != nullptr) std::fclose(file);
  }
  {
    std::optional<ScopedMount> mounted = this->MountKey("view-base");
    ASSERT_TRUE(mounted);
    EXPECT_EQ(ReadTestFile(mounted->target() / "shared"), "v1");
  }
  // An active snapshot with no parent and an empty view mount too.
  ASSERT_TRUE(this->sn().Prepare("empty-active", ""));
  ASSERT_TRUE(this->sn().View("empty-view", ""));
  EXPECT_TRUE(this->ListKey("empty-active").empty());
  EXPECT_TRUE(this->ListKey("empty-view").empty());
}

TYPED_TEST_P(SnapshotterConformance, PrepareReturnsTheSameMountsAsMounts) {
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("base", "", {{"a", "a"}}));
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("second", "base", {{"b", "b"}}));
  for (std::string parent : {"", "base", "second"}) {
    auto prepared = this->sn().Prepare("active-" + parent, parent);
    ASSERT_OK(prepared);
    auto mounts = this->sn().Mounts("active-" + parent);
    ASSERT_TRUE(mounts);
    EXPECT_EQ(*prepared, *mounts);
    auto viewed = this->sn().View("view-" + parent, parent);
    ASSERT_OK(viewed);
    auto view_mounts = this->sn().Mounts("view-" + parent);
    ASSERT_TRUE(view_mounts);
    EXPECT_EQ(*viewed, *view_mounts);
  }
}

TYPED_TEST_P(SnapshotterConformance, ApplyTargetTakesALayerWithoutMounting) {
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("base", "", {{"etc/hosts", "base"}}));
  ASSERT_TRUE(this->sn().Prepare("extract", "base"));
  auto target = this->sn().GetApplyTarget("extract");
  ASSERT_OK(target);
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(target->directory / "usr/bin/tool", "tool", 0755));
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(target->directory / "etc/hosts", "layer"));
  ASSERT_TRUE(this->sn().Commit("layer", "extract"));

  ASSERT_TRUE(this->sn().View("view", "layer"));
  std::optional<ScopedMount> mounted = this->MountKey("view");
  ASSERT_TRUE(mounted);
  EXPECT_EQ(ReadTestFile(mounted->target() / "usr/bin/tool"), "tool");
  EXPECT_EQ(ReadTestFile(mounted->target() / "etc/hosts"), "layer");
  struct stat st;
  ASSERT_EQ(::stat((mounted->target() / "usr/bin/tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

TYPED_TEST_P(SnapshotterConformance, WhiteoutsHideParentFiles) {
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer(
      "base", "",
      {{"etc/passwd", "root"}, {"etc/group", "wheel"}, {"opt/dir/x", "x"}, {"opt/dir/y", "y"}}));
  ASSERT_TRUE(this->sn().Prepare("extract", "base"));
  auto target = this->sn().GetApplyTarget("extract");
  ASSERT_OK(target);
  const fs::path& dir = target->directory;
  if (target->whiteouts == WhiteoutStyle::kOverlay) {
    // A character device 0/0 deletes a lower file; the opaque xattr hides a lower directory's
    // contents while new entries in it stay visible.
    fs::create_directories(dir / "etc");
    ASSERT_EQ(::mknod((dir / "etc/passwd").c_str(), S_IFCHR | 0000, makedev(0, 0)), 0)
        << std::strerror(errno);
    fs::create_directories(dir / "opt/dir");
    ASSERT_EQ(::setxattr((dir / "opt/dir").c_str(), target->opaque_xattr.c_str(), "y", 1, 0), 0)
        << target->opaque_xattr << ": " << std::strerror(errno);
  } else {
    ASSERT_EQ(target->whiteouts, WhiteoutStyle::kDelete);
    EXPECT_TRUE(target->opaque_xattr.empty());
    ASSERT_TRUE(fs::remove(dir / "etc/passwd"));
    ASSERT_EQ(fs::remove_all(dir / "opt/dir"), 3u);
    fs::create_directories(dir / "opt/dir");
  }
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(dir / "opt/dir/z", "z"));
  ASSERT_TRUE(this->sn().Commit("layer", "extract"));

  // Both a container and a view see the deletions.
  ASSERT_TRUE(this->sn().Prepare("container", "layer"));
  ASSERT_TRUE(this->sn().View("view", "layer"));
  for (const char* key : {"container", "view"}) {
    EXPECT_EQ(this->ListKey(key),
              (std::set<std::string>{"etc", "etc/group", "opt", "opt/dir", "opt/dir/z"}))
        << key;
  }
  // The parent layer still has everything.
  ASSERT_TRUE(this->sn().View("view-base", "base"));
  EXPECT_EQ(this->ListKey("view-base").count("etc/passwd"), 1u);
  EXPECT_EQ(this->ListKey("view-base").count("opt/dir/x"), 1u);
}

TYPED_TEST_P(SnapshotterConformance, StatReportsKindsParentsAndLabels) {
  const auto before = std::chrono::system_clock::now();
  ASSERT_TRUE(this->sn().Prepare("active", "", {{"berth.io/source", "layer1"}}));
  auto active = this->sn().Stat("active");
  ASSERT_OK(active);
  EXPECT_EQ(active->kind, Kind::kActive);
  EXPECT_EQ(active->name, "active");
  EXPECT_EQ(active->parent, "");
  EXPECT_EQ(active->labels, (Labels{{"berth.io/source", "layer1"}}));
  EXPECT_GE(active->created, before - std::chrono::seconds(1));
  EXPECT_EQ(active->created, active->updated);

  ASSERT_TRUE(this->sn().Commit("committed", "active", {{"berth.io/chain", "c1"}}));
  BERTH_EXPECT_CODE(this->sn().Stat("active"), ErrorCode::kNotFound);
  auto committed = this->sn().Stat("committed");
  ASSERT_TRUE(committed);
  EXPECT_EQ(committed->kind, Kind::kCommitted);
  EXPECT_EQ(committed->name, "committed");
  EXPECT_EQ(committed->labels, (Labels{{"berth.io/chain", "c1"}}));  // replaced, not merged
  EXPECT_EQ(committed->created, active->created);
  EXPECT_GE(committed->updated, committed->created);

  ASSERT_TRUE(this->sn().View("view", "committed"));
  auto view = this->sn().Stat("view");
  ASSERT_TRUE(view);
  EXPECT_EQ(view->kind, Kind::kView);
  EXPECT_EQ(view->parent, "committed");
  EXPECT_TRUE(view->labels.empty());

  ASSERT_TRUE(this->sn().Prepare("child", "committed"));
  auto child = this->sn().Stat("child");
  ASSERT_TRUE(child);
  EXPECT_EQ(child->kind, Kind::kActive);
  EXPECT_EQ(child->parent, "committed");
}

TYPED_TEST_P(SnapshotterConformance, UpdateLabelsReplacesOrMerges) {
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("base", "", {{"a", "a"}}));
  ASSERT_TRUE(this->sn().Prepare("active", "base", {{"keep", "1"}, {"drop", "2"}}));
  auto before = this->sn().Stat("active");
  ASSERT_OK(before);

  auto merged = this->sn().UpdateLabels("active", {.mode = LabelUpdate::Mode::kMerge,
                                                   .set = {{"new", "3"}, {"keep", "1b"}},
                                                   .remove = {"drop", "never-there"}});
  ASSERT_OK(merged);
  EXPECT_EQ(merged->labels, (Labels{{"keep", "1b"}, {"new", "3"}}));
  EXPECT_EQ(merged->kind, Kind::kActive);
  EXPECT_EQ(merged->parent, "base");
  EXPECT_EQ(merged->created, before->created);
  EXPECT_GE(merged->updated, before->updated);
  EXPECT_EQ(*merged, *this->sn().Stat("active"));

  // Committed snapshots take label changes too; replacing drops every other label.
  auto replaced = this->sn().UpdateLabels(
      "base", {.mode = LabelUpdate::Mode::kReplace, .set = {{"only", "x"}}});
  ASSERT_OK(replaced);
  EXPECT_EQ(replaced->labels, (Labels{{"only", "x"}}));
  EXPECT_EQ(this->sn().Stat("base")->labels, (Labels{{"only", "x"}}));
  auto cleared = this->sn().UpdateLabels("base", {.mode = LabelUpdate::Mode::kReplace});
  ASSERT_OK(cleared);
  EXPECT_TRUE(this->sn().Stat("base")->labels.empty());
  EXPECT_EQ(this->sn().Stat("base")->kind, Kind::kCommitted);

  BERTH_EXPECT_CODE(this->sn().UpdateLabels("missing", {.set = {{"k", "v"}}}),
                    ErrorCode::kNotFound);
  BERTH_EXPECT_CODE(this->sn().UpdateLabels("active", {.set = {{"", "v"}}}),
                    ErrorCode::kInvalidArgument);
  EXPECT_EQ(this->sn().Stat("active")->labels, (Labels{{"keep", "1b"}, {"new", "3"}}));
}

TYPED_TEST_P(SnapshotterConformance, WalkVisitsEverySnapshot) {
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("base", "", {{"a", "a"}}));
  ASSERT_TRUE(this->sn().Prepare("active", "base", {{"k", "v"}}));
  ASSERT_TRUE(this->sn().View("view", "base"));
  std::map<std::string, Info> seen;
  auto walked = this->sn().Walk([&](const Info& info) -> Result<void> {
    seen.emplace(info.name, info);
    return Ok();
  });
  ASSERT_OK(walked);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen.at("base").kind, Kind::kCommitted);
  EXPECT_EQ(seen.at("active").kind, Kind::kActive);
  EXPECT_EQ(seen.at("active").parent, "base");
  EXPECT_EQ(seen.at("active").labels, (Labels{{"k", "v"}}));
  EXPECT_EQ(seen.at("view").kind, Kind::kView);
  EXPECT_EQ(seen.at("view"), *this->sn().Stat("view"));

  // A failing visit stops the walk and its error comes back; visits may call the snapshotter.
  int visits = 0;
  auto stopped = this->sn().Walk([&](const Info& info) -> Result<void> {
    ++visits;
    if (!this->sn().Stat(info.name)) return Fail(ErrorCode::kInternal, "stat in walk failed");
    return Fail(ErrorCode::kCancelled, "enough");
  });
  ASSERT_FALSE(stopped);
  EXPECT_EQ(stopped.error().code(), ErrorCode::kCancelled);
  EXPECT_EQ(visits, 1);
}

// Whether `Factory`'s committed snapshots keep the usage of the active snapshot they came from.
template <typename Factory>
constexpr bool CommitKeepsUsage() {
  if constexpr (requires { Factory::kCommitKeepsUsage; }) {
    return Factory::kCommitKeepsUsage;
  } else {
    return true;
  }
}

TYPED_TEST_P(SnapshotterConformance, UsageCountsBytesAndInodes) {
  ASSERT_TRUE(this->sn().Prepare("active", ""));
  auto empty = this->sn().GetUsage("active");
  ASSERT_OK(empty);
  EXPECT_EQ(empty->inodes, 1);  // the top directory

  auto target = this->sn().GetApplyTarget("active");
  ASSERT_TRUE(target);
  const fs::path& dir = target->directory;
  constexpr int64_t kBig = 256 * 1024;
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(dir / "big", std::string(kBig, 'b')));
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(dir / "sub/small", "small"));
  ASSERT_EQ(::link((dir / "big").c_str(), (dir / "sub/big-link").c_str()), 0);
  ASSERT_EQ(::symlink("big", (dir / "symlink").c_str()), 0);
  // top, big (two names, one inode), sub, sub/small, symlink.
  constexpr int64_t kInodes = 5;

  auto active = this->sn().GetUsage("active");
  ASSERT_TRUE(active);
  EXPECT_EQ(active->inodes, kInodes);
  EXPECT_GE(active->size, kBig);

  ASSERT_TRUE(this->sn().Commit("layer", "active"));
  auto committed = this->sn().GetUsage("layer");
  ASSERT_OK(committed);
  EXPECT_EQ(committed->inodes, kInodes);
  EXPECT_GE(committed->size, kBig);
  // The hard link is counted once: well under two copies of the big file.
  EXPECT_LT(committed->size, kBig + 64 * 1024);
  if (CommitKeepsUsage<TypeParam>()) {
    EXPECT_EQ(*committed, *active);
  }
}

TYPED_TEST_P(SnapshotterConformance, MisuseReturnsPreciseErrorCodes) {
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("base", "", {{"a", "a"}}));
  ASSERT_TRUE(this->sn().Prepare("active", "base"));
  ASSERT_TRUE(this->sn().View("view", "base"));

  // Names are unique across kinds.
  BERTH_EXPECT_CODE(this->sn().Prepare("active", ""), ErrorCode::kAlreadyExists);
  BERTH_EXPECT_CODE(this->sn().Prepare("base", ""), ErrorCode::kAlreadyExists);
  BERTH_EXPECT_CODE(this->sn().View("view", "base"), ErrorCode::kAlreadyExists);
  BERTH_EXPECT_CODE(this->sn().Commit("view", "active"), ErrorCode::kAlreadyExists);
  EXPECT_EQ(this->sn().Stat("active")->kind, Kind::kActive);  // still there

  // Parents must exist and be committed.
  BERTH_EXPECT_CODE(this->sn().Prepare("orphan", "no-such-parent"), ErrorCode::kNotFound);
  BERTH_EXPECT_CODE(this->sn().View("orphan", "no-such-parent"), ErrorCode::kNotFound);
  BERTH_EXPECT_CODE(this->sn().Prepare("orphan", "active"), ErrorCode::kFailedPrecondition);
  BERTH_EXPECT_CODE(this->sn().Prepare("orphan", "view"), ErrorCode::kFailedPrecondition);
  BERTH_EXPECT_CODE(this->sn().Stat("orphan"), ErrorCode::kNotFound);

  // Only active snapshots commit.
  BERTH_EXPECT_CODE(this->sn().Commit("x", "view"), ErrorCode::kFailedPrecondition);
  BERTH_EXPECT_CODE(this->sn().Commit("x", "base"), ErrorCode::kFailedPrecondition);
  BERTH_EXPECT_CODE(this->sn().Commit("x", "missing"), ErrorCode::kNotFound);

  // Unknown keys.
  BERTH_EXPECT_CODE(this->sn().Mounts("missing"), ErrorCode::kNotFound);
  BERTH_EXPECT_CODE(this->sn().Stat("missing"), ErrorCode::kNotFound);
  BERTH_EXPECT_CODE(this->sn().GetUsage("missing"), ErrorCode::kNotFound);
  BERTH_EXPECT_CODE(this->sn().Remove("missing"), ErrorCode::kNotFound);
  BERTH_EXPECT_CODE(this->sn().GetApplyTarget("missing"), ErrorCode::kNotFound);

  // Committed snapshots are not mounted or written directly.
  BERTH_EXPECT_CODE(this->sn().Mounts("base"), ErrorCode::kFailedPrecondition);
  BERTH_EXPECT_CODE(this->sn().GetApplyTarget("base"), ErrorCode::kFailedPrecondition);
  BERTH_EXPECT_CODE(this->sn().GetApplyTarget("view"), ErrorCode::kFailedPrecondition);

  // Empty names.
  BERTH_EXPECT_CODE(this->sn().Prepare("", ""), ErrorCode::kInvalidArgument);
  BERTH_EXPECT_CODE(this->sn().View("", "base"), ErrorCode::kInvalidArgument);
  BERTH_EXPECT_CODE(this->sn().Commit("", "active"), ErrorCode::kInvalidArgument);

  // None of the failures left anything behind.
  auto leftovers = this->cleaner().Cleanup();
  ASSERT_TRUE(leftovers);
  EXPECT_THAT(*leftovers, ::testing::IsEmpty());
}

TYPED_TEST_P(SnapshotterConformance, RemoveRefusesParentsWithChildren) {
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("base", "", {{"a", "a"}}));
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("middle", "base", {{"b", "b"}}));
  ASSERT_TRUE(this->sn().Prepare("active", "middle"));
  ASSERT_TRUE(this->sn().View("view", "middle"));

  auto refused = this->sn().Remove("middle");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_THAT(refused.error().ToString(), ::testing::HasSubstr("has 2 children"));
  BERTH_EXPECT_CODE(this->sn().Remove("base"), ErrorCode::kFailedPrecondition);

  ASSERT_TRUE(this->sn().Remove("active"));
  BERTH_EXPECT_CODE(this->sn().Stat("active"), ErrorCode::kNotFound);
  auto one_left = this->sn().Remove("middle");
  ASSERT_FALSE(one_left);
  EXPECT_THAT(one_left.error().ToString(), ::testing::HasSubstr("has 1 child;"));
  ASSERT_TRUE(this->sn().Remove("view"));
  ASSERT_TRUE(this->sn().Remove("middle"));
  ASSERT_TRUE(this->sn().Remove("base"));

  int count = 0;
  ASSERT_TRUE(this->sn().Walk([&](const Info&) -> Result<void> {
    ++count;
    return Ok();
  }));
  EXPECT_EQ(count, 0);
  // Remove deleted the directories itself.
  EXPECT_TRUE(fs::is_empty(this->root() / "snapshots"));
  // The key is free again.
  EXPECT_TRUE(this->sn().Prepare("base", ""));
}

TYPED_TEST_P(SnapshotterConformance, ReopeningKeepsSnapshots) {
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("base", "", {{"etc/os-release", "base"}}));
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("app", "base", {{"app", "app"}}));
  ASSERT_TRUE(this->sn().Prepare("active", "app", {{"k", "v"}}));
  {
    auto target = this->sn().GetApplyTarget("active");
    ASSERT_TRUE(target);
    ASSERT_NO_FATAL_FAILURE(WriteTestFile(target->directory / "pending", "pending"));
  }
  auto base_before = this->sn().Stat("base");
  ASSERT_TRUE(base_before);

  ASSERT_NO_FATAL_FAILURE(this->Reopen());
  auto base_after = this->sn().Stat("base");
  ASSERT_OK(base_after);
  EXPECT_EQ(*base_after, *base_before);
  EXPECT_EQ(this->sn().Stat("app")->parent, "base");
  EXPECT_EQ(this->sn().Stat("active")->labels, (Labels{{"k", "v"}}));
  auto cleaned = this->cleaner().Cleanup();
  ASSERT_TRUE(cleaned);
  EXPECT_THAT(*cleaned, ::testing::IsEmpty());

  // The reopened active snapshot still commits, and the whole chain mounts.
  ASSERT_TRUE(this->sn().Commit("top", "active"));
  ASSERT_TRUE(this->sn().View("view", "top"));
  EXPECT_EQ(this->ListKey("view"),
            (std::set<std::string>{"app", "etc", "etc/os-release", "pending"}));
}

TYPED_TEST_P(SnapshotterConformance, SecondOpenOfARootIsRefused) {
  auto second = TypeParam::Open(this->Options());
  ASSERT_FALSE(second);
  EXPECT_THAT(second, FailsWith(ErrorCode::kUnavailable));
}

TYPED_TEST_P(SnapshotterConformance, CleanupRemovesOnlyUnreferencedDirectories) {
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("base", "", {{"a", "a"}}));
  ASSERT_TRUE(this->sn().Prepare("active", "base"));
  const fs::path snapshots = this->root() / "snapshots";
  std::set<fs::path> garbage = {snapshots / "new-abc123", snapshots / "rm-7", snapshots / "999",
                                snapshots / "0042", snapshots / "stray-file"};
  for (const fs::path& path : garbage) {
    if (path.filename() == "stray-file") {
      ASSERT_NO_FATAL_FAILURE(WriteTestFile(path, "junk"));
    } else {
      ASSERT_NO_FATAL_FAILURE(WriteTestFile(path / "fs/junk", "junk"));
      ASSERT_EQ(::chmod((path / "fs").c_str(), 0555), 0);  // even read-only trees go
    }
  }
  auto removed = this->cleaner().Cleanup();
  ASSERT_OK(removed);
  EXPECT_EQ(std::set<fs::path>(removed->begin(), removed->end()), garbage);
  for (const fs::path& path : garbage) EXPECT_FALSE(Exists(path)) << path;

  // Live snapshots are untouched.
  ASSERT_TRUE(this->sn().View("view", "base"));
  EXPECT_EQ(this->ListKey("view"), (std::set<std::string>{"a"}));
  EXPECT_EQ(this->ListKey("active"), (std::set<std::string>{"a"}));
  auto again = this->cleaner().Cleanup();
  ASSERT_TRUE(again);
  EXPECT_THAT(*again, ::testing::IsEmpty());
}

// Why the crash tests skip for `Factory` ("" to run them): its CrashSkipReason, if it has one.
template <typename Factory>
std::string CrashSkipReason() {
  if constexpr (requires { Factory::CrashSkipReason(); }) {
    return Factory::CrashSkipReason();
  } else {
    return "";
  }
}

// Crash simulation: a forked child runs an operation and dies (_exit, no destructors, the SQLite
// transaction never committed) at a named point. The parent then reopens the root.
TYPED_TEST_P(SnapshotterConformance, CrashBeforePrepareCommitsLeavesOnlyGarbage) {
  if (std::string reason = CrashSkipReason<TypeParam>(); !reason.empty()) GTEST_SKIP() << reason;
  GTEST_FLAG_SET(death_test_style, "fast");
  this->snapshotter_.reset();  // the child must be able to take the root lock
  LocalSnapshotterOptions options = this->Options();
  options.crash_point_for_test = [](std::string_view point) {
    if (point == "prepare:before-commit") ::_exit(0);
  };
  EXPECT_EXIT(
      {
        auto crashing = TypeParam::Open(options);
        if (!crashing) ::_exit(2);
        (void)(*crashing)->Prepare("doomed", "", {});
        ::_exit(3);
      },
      ::testing::ExitedWithCode(0), "");

  ASSERT_NO_FATAL_FAILURE(this->Open());
  BERTH_EXPECT_CODE(this->sn().Stat("doomed"), ErrorCode::kNotFound);
  EXPECT_FALSE(fs::is_empty(this->root() / "snapshots"));  // the half-made directory
  auto removed = this->cleaner().Cleanup();
  ASSERT_TRUE(removed);
  EXPECT_EQ(removed->size(), 1u);
  EXPECT_TRUE(fs::is_empty(this->root() / "snapshots"));
  EXPECT_TRUE(this->sn().Prepare("doomed", ""));
}

TYPED_TEST_P(SnapshotterConformance, CrashBeforeCommitKeepsTheActiveSnapshot) {
  if (std::string reason = CrashSkipReason<TypeParam>(); !reason.empty()) GTEST_SKIP() << reason;
  GTEST_FLAG_SET(death_test_style, "fast");
  ASSERT_TRUE(this->sn().Prepare("active", ""));
  this->snapshotter_.reset();
  LocalSnapshotterOptions options = this->Options();
  options.crash_point_for_test = [](std::string_view point) {
    if (point == "commit:before-commit") ::_exit(0);
  };
  EXPECT_EXIT(
      {
        auto crashing = TypeParam::Open(options);
        if (!crashing) ::_exit(2);
        (void)(*crashing)->Commit("layer", "active", {});
        ::_exit(3);
      },
      ::testing::ExitedWithCode(0), "");

  ASSERT_NO_FATAL_FAILURE(this->Open());
  BERTH_EXPECT_CODE(this->sn().Stat("layer"), ErrorCode::kNotFound);
  EXPECT_EQ(this->sn().Stat("active")->kind, Kind::kActive);
  EXPECT_TRUE(this->sn().Commit("layer", "active"));
}

TYPED_TEST_P(SnapshotterConformance, CrashAfterRemoveCommitsLeavesGarbageForCleanup) {
  if (std::string reason = CrashSkipReason<TypeParam>(); !reason.empty()) GTEST_SKIP() << reason;
  GTEST_FLAG_SET(death_test_style, "fast");
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("base", "", {{"a", "a"}}));
  this->snapshotter_.reset();
  LocalSnapshotterOptions options = this->Options();
  options.crash_point_for_test = [](std::string_view point) {
    if (point == "remove:after-commit") ::_exit(0);
  };
  EXPECT_EXIT(
      {
        auto crashing = TypeParam::Open(options);
        if (!crashing) ::_exit(2);
        (void)(*crashing)->Remove("base");
        ::_exit(3);
      },
      ::testing::ExitedWithCode(0), "");

  ASSERT_NO_FATAL_FAILURE(this->Open());
  BERTH_EXPECT_CODE(this->sn().Stat("base"), ErrorCode::kNotFound);
  auto removed = this->cleaner().Cleanup();
  ASSERT_TRUE(removed);
  ASSERT_EQ(removed->size(), 1u);
  EXPECT_EQ(removed->front().filename().string().substr(0, 3), "rm-");
  EXPECT_TRUE(fs::is_empty(this->root() / "snapshots"));
}

TYPED_TEST_P(SnapshotterConformance, ConcurrentCallersAreSerialised) {
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("base", "", {{"a", "a"}}));
  constexpr int kThreads = 4;
  constexpr int kLayersEach = 5;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::string parent = "base";
      for (int i = 0; i < kLayersEach; ++i) {
        std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
        if (!this->sn().Prepare(name + "-active", parent) ||
            !this->sn().Commit(name, name + "-active") || !this->sn().Stat(name) ||
            !this->sn().View(name + "-view", name) || !this->sn().Remove(name + "-view")) {
          ++failures;
        }
        parent = name;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  int committed = 0;
  ASSERT_TRUE(this->sn().Walk([&](const Info& info) -> Result<void> {
    if (info.kind == Kind::kCommitted) ++committed;
    return Ok();
  }));
  EXPECT_EQ(committed, 1 + kThreads * kLayersEach);
  EXPECT_EQ(this->sn().Stat("t2-4")->parent, "t2-3");
}

TYPED_TEST_P(SnapshotterConformance, CommitRebasedChainsLayersPreparedWithoutParents) {
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("base", "", {{"shared", "v1"}, {"base-only", "b"}}));
  ASSERT_TRUE(this->sn().Prepare("late-active", ""));
  {
    std::optional<ScopedMount> mounted = this->MountKey("late-active");
    ASSERT_TRUE(mounted);
    ASSERT_NO_FATAL_FAILURE(WriteTestFile(mounted->target() / "shared", "v2"));
    ASSERT_TRUE(mounted->Release());
  }
  if (!this->sn().SupportsRebase()) {
    BERTH_EXPECT_CODE(this->sn().CommitRebased("late", "late-active", "base"),
                      ErrorCode::kFailedPrecondition);
    EXPECT_EQ(this->sn().Stat("late-active")->kind, Kind::kActive);
    return;
  }
  BERTH_EXPECT_CODE(this->sn().CommitRebased("late", "late-active", "missing"),
                    ErrorCode::kNotFound);
  ASSERT_TRUE(this->sn().Prepare("not-committed", ""));
  BERTH_EXPECT_CODE(this->sn().CommitRebased("late", "late-active", "not-committed"),
                    ErrorCode::kFailedPrecondition);
  ASSERT_TRUE(this->sn().CommitRebased("late", "late-active", "base"));
  EXPECT_EQ(this->sn().Stat("late")->parent, "base");
  ASSERT_TRUE(this->sn().View("late-view", "late"));
  {
    std::optional<ScopedMount> mounted = this->MountKey("late-view");
    ASSERT_TRUE(mounted);
    EXPECT_EQ(ReadTestFile(mounted->target() / "shared"), "v2");
    EXPECT_EQ(ReadTestFile(mounted->target() / "base-only"), "b");
  }
  // The parent now has a child, and a snapshot with a parent cannot be rebased again.
  BERTH_EXPECT_CODE(this->sn().Remove("base"), ErrorCode::kFailedPrecondition);
  ASSERT_TRUE(this->sn().Prepare("child-active", "late"));
  BERTH_EXPECT_CODE(this->sn().CommitRebased("child", "child-active", "base"),
                    ErrorCode::kFailedPrecondition);
}

TYPED_TEST_P(SnapshotterConformance, RenameKeepsContentsParentAndChildren) {
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("base", "", {{"a", "a"}}));
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("middle", "base", {{"b", "b"}}));
  ASSERT_NO_FATAL_FAILURE(this->CommitLayer("top", "middle", {{"c", "c"}}));
  if (!TypeParam::kRenames) {
    BERTH_EXPECT_CODE(this->sn().Rename("middle", "renamed", {}), ErrorCode::kUnimplemented);
    return;
  }
  auto before = this->sn().Stat("middle");
  ASSERT_OK(before);
  ASSERT_OK(this->sn().Rename("middle", "renamed", {{"owner", "someone"}}));
  BERTH_EXPECT_CODE(this->sn().Stat("middle"), ErrorCode::kNotFound);
  auto after = this->sn().Stat("renamed");
  ASSERT_OK(after);
  EXPECT_EQ(after->kind, Kind::kCommitted);
  EXPECT_EQ(after->parent, "base");
  EXPECT_EQ(after->labels, (Labels{{"owner", "someone"}}));
  EXPECT_EQ(after->created, before->created);
  EXPECT_EQ(this->sn().Stat("top")->parent, "renamed");
  ASSERT_TRUE(this->sn().View("top-view", "top"));
  EXPECT_EQ(this->ListKey("top-view"), (std::set<std::string>{"a", "b", "c"}));

  BERTH_EXPECT_CODE(this->sn().Rename("missing", "x", {}), ErrorCode::kNotFound);
  BERTH_EXPECT_CODE(this->sn().Rename("renamed", "top", {}), ErrorCode::kAlreadyExists);
  BERTH_EXPECT_CODE(this->sn().Rename("top-view", "x", {}), ErrorCode::kFailedPrecondition);
  BERTH_EXPECT_CODE(this->sn().Rename("renamed", "", {}), ErrorCode::kInvalidArgument);
  EXPECT_EQ(this->sn().Stat("renamed")->labels, (Labels{{"owner", "someone"}}));
}

REGISTER_TYPED_TEST_SUITE_P(
    SnapshotterConformance, CommitRebasedChainsLayersPreparedWithoutParents,
    RenameKeepsContentsParentAndChildren, PrepareCommitAndViewStackLayers,
    PrepareReturnsTheSameMountsAsMounts, ApplyTargetTakesALayerWithoutMounting,
    WhiteoutsHideParentFiles, StatReportsKindsParentsAndLabels, UpdateLabelsReplacesOrMerges,
    WalkVisitsEverySnapshot, UsageCountsBytesAndInodes, MisuseReturnsPreciseErrorCodes,
    RemoveRefusesParentsWithChildren, ReopeningKeepsSnapshots, SecondOpenOfARootIsRefused,
    CleanupRemovesOnlyUnreferencedDirectories, CrashBeforePrepareCommitsLeavesOnlyGarbage,
    CrashBeforeCommitKeepsTheActiveSnapshot, CrashAfterRemoveCommitsLeavesGarbageForCleanup,
    ConcurrentCallersAreSerialised);

}  // namespace berth::snapshot::testing
