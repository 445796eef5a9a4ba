#include "berth/snapshot/mount.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>

#include "berth/snapshot/snapshot_test_util.h"
#include "testing/temp_dir.h"

namespace berth::snapshot {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ReadTestFile;
using testing::WriteTestFile;

// Whether `target` is a mount point, from /proc/self/mountinfo (field 5).
bool IsMounted(const fs::path& target) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    std::istringstream fields(line);
    std::string id, parent, device, root, mount_point;
    fields >> id >> parent >> device >> root >> mount_point;
    if (mount_point == target.string()) return true;
  }
  return false;
}

class MountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string reason = testing::MountSkipReason();
    if (!reason.empty()) GTEST_SKIP() << reason;
    auto dir = berth::testing::TempDir::Create("mount");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
    source_ = dir_->path() / "source";
    target_ = dir_->path() / "target";
    ASSERT_NO_FATAL_FAILURE(WriteTestFile(source_ / "file", "content"));
    fs::create_directories(target_);
  }
  void TearDown() override {
    if (dir_) (void)UnmountAll(target_);
  }

  std::optional<berth::testing::TempDir> dir_;
  fs::path source_;
  fs::path target_;
};

TEST(MountToStringTest, ShowsTypeSourceAndOptions) {
  EXPECT_EQ(ToString({"overlay", "overlay", {"lowerdir=/a:/b", "index=off"}}),
            "overlay overlay lowerdir=/a:/b,index=off");
  EXPECT_EQ(ToString({"bind", "/src", {}}), "bind /src");
}

TEST_F(MountTest, ReadOnlyBindIsReallyReadOnly) {
  const Mount mount{"bind", source_.string(), {"rbind", "ro"}};
  ASSERT_TRUE(MountAll({&mount, 1}, target_));
  EXPECT_TRUE(IsMounted(target_));
  EXPECT_EQ(ReadTestFile(target_ / "file"), "content");
  std::FILE* file = std::fopen((target_ / "new").c_str(), "w");
  const int open_errno = errno;
  EXPECT_EQ(file, nullptr);
  EXPECT_EQ(open_errno, EROFS);
  if (file != nullptr) std::fclose(file);
  ASSERT_TRUE(Unmount(target_));
  EXPECT_FALSE(IsMounted(target_));
  EXPECT_EQ(ReadTestFile(target_ / "file"), "<missing>");
}

TEST_F(MountTest, ReadWriteBindWritesThrough) {
  const Mount mount{"bind", source_.string(), {"rbind", "rw"}};
  ASSERT_TRUE(MountAll({&mount, 1}, target_));
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(target_ / "new", "written"));
  ASSERT_TRUE(UnmountAll(target_));
  EXPECT_EQ(ReadTestFile(source_ / "new"), "written");
}

TEST_F(MountTest, OverlayMergesLayers) {
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(dir_->path() / "lower2/file", "lower"));
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(dir_->path() / "lower2/only-lower", "x"));
  fs::create_directories(dir_->path() / "upper");
  fs::create_directories(dir_->path() / "work");
  const Mount mount{"overlay",
                    "overlay",
                    {"index=off", "workdir=" + (dir_->path() / "work").string(),
                     "upperdir=" + (dir_->path() / "upper").string(),
                     "lowerdir=" + source_.string() + ":" + (dir_->path() / "lower2").string()}};
  auto mounted = ScopedMount::Create({&mount, 1}, target_);
  ASSERT_TRUE(mounted) << mounted.error().ToString();
  EXPECT_EQ(ReadTestFile(target_ / "file"), "content");  // the first lowerdir wins
  EXPECT_EQ(ReadTestFile(target_ / "only-lower"), "x");
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(target_ / "new", "upper"));
  EXPECT_EQ(ReadTestFile(dir_->path() / "upper/new"), "upper");
}

TEST_F(MountTest, ScopedMountUnmountsWhenDestroyed) {
  const Mount mount{"bind", source_.string(), {"rbind", "ro"}};
  {
    auto mounted = ScopedMount::Create({&mount, 1}, target_);
    ASSERT_TRUE(mounted);
    EXPECT_TRUE(IsMounted(target_));
    ScopedMount moved = std::move(*mounted);
    EXPECT_EQ(moved.target(), target_);
    EXPECT_TRUE(IsMounted(target_));  // moving does not unmount
  }
  EXPECT_FALSE(IsMounted(target_));
}

TEST_F(MountTest, FailedMountUndoesEarlierOnes) {
  const Mount mounts[] = {
      {"bind", source_.string(), {"rbind", "ro"}},
      {"no-such-filesystem-type", "none", {}},
  };
  auto mounted = MountAll(mounts, target_);
  ASSERT_FALSE(mounted);
  EXPECT_THAT(mounted.error().message(), HasSubstr("no-such-filesystem-type"));
  EXPECT_FALSE(IsMounted(target_));
}

TEST_F(MountTest, OptionsLongerThanAPageAreRefusedBeforeMounting) {
  std::string lowerdir = "lowerdir=";
  for (int i = 0; i < 200; ++i) lowerdir += (i ? ":" : "") + source_.string();
  const Mount mount{"overlay", "overlay", {"index=off", lowerdir}};
  auto mounted = MountAll({&mount, 1}, target_);
  ASSERT_FALSE(mounted);
  EXPECT_EQ(mounted.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_THAT(mounted.error().message(), HasSubstr("one page"));
  EXPECT_FALSE(IsMounted(target_));
}

TEST_F(MountTest, UnmountOfANonMountPoint) {
  auto unmounted = Unmount(target_);
  ASSERT_FALSE(unmounted);
  EXPECT_EQ(unmounted.error().code(), ErrorCode::kFailedPrecondition);
  // UnmountAll is idempotent: nothing mounted, or no such directory, is success.
  EXPECT_TRUE(UnmountAll(target_));
  EXPECT_TRUE(UnmountAll(dir_->path() / "does-not-exist"));
}

TEST_F(MountTest, UnmountAllRemovesStackedMounts) {
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(dir_->path() / "other/file", "other"));
  const Mount mounts[] = {
      {"bind", source_.string(), {"rbind", "ro"}},
      {"bind", (dir_->path() / "other").string(), {"rbind", "ro"}},
  };
  ASSERT_TRUE(MountAll(mounts, target_));
  EXPECT_EQ(ReadTestFile(target_ / "file"), "other");  // the last mount is on top
  ASSERT_TRUE(UnmountAll(target_));
  EXPECT_FALSE(IsMounted(target_));
}

}  // namespace
}  // namespace berth::snapshot
