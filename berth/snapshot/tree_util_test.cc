#include "berth/snapshot/tree_util.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <optional>
#include <string>

#include "berth/base/file_util.h"
#include "berth/base/unique_fd.h"
#include "berth/snapshot/snapshot_test_util.h"
#include "testing/temp_dir.h"

namespace berth::snapshot {
namespace {

namespace fs = std::filesystem;
using testing::Exists;
using testing::ReadTestFile;
using testing::WriteTestFile;

struct stat Lstat(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st;
}

std::string GetXattr(const fs::path& path, const char* name) {
  char value[256];
  ssize_t size = ::lgetxattr(path.c_str(), name, value, sizeof value);
  if (size < 0) return "<none>";
  return std::string(value, static_cast<size_t>(size));
}

class TreeUtilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = berth::testing::TempDir::Create("tree");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
    source_ = dir_->path() / "source";
    destination_ = dir_->path() / "destination";
    fs::create_directories(source_);
    fs::create_directories(destination_);
  }

  std::optional<berth::testing::TempDir> dir_;
  fs::path source_;
  fs::path destination_;
};

TEST_F(TreeUtilTest, CopyTreePreservesEverythingAnImageUses) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown, mknod and trusted xattrs need root";
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(source_ / "bin/tool", "#!/bin/sh\n", 04755));
  ASSERT_EQ(::chown((source_ / "bin/tool").c_str(), 1000, 1000), 0);
  ASSERT_EQ(::chmod((source_ / "bin/tool").c_str(), 04755), 0);  // chown cleared setuid
  ASSERT_EQ(::lsetxattr((source_ / "bin/tool").c_str(), "user.note", "hi", 2, 0), 0);
  ASSERT_EQ(::lsetxattr((source_ / "bin/tool").c_str(), "trusted.t", "t", 1, 0), 0);
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(source_ / "data/a", "hard"));
  ASSERT_EQ(::link((source_ / "data/a").c_str(), (source_ / "bin/a-link").c_str()), 0);
  ASSERT_EQ(::symlink("../data/a", (source_ / "bin/sym").c_str()), 0);
  ASSERT_EQ(::symlink("/nonexistent/target", (source_ / "dangling").c_str()), 0);
  ASSERT_EQ(::mknod((source_ / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  ASSERT_EQ(::mknod((source_ / "whiteout").c_str(), S_IFCHR | 0000, makedev(0, 0)), 0);
  ASSERT_EQ(::mkfifo((source_ / "fifo").c_str(), 0640), 0);
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(source_ / "locked/inside", "x"));
  ASSERT_EQ(::chmod((source_ / "locked").c_str(), 0555), 0);
  ASSERT_EQ(::chmod((source_ / "data").c_str(), 01777), 0);
  ASSERT_EQ(::lsetxattr((source_ / "data").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  const struct timespec old_times[2] = {{1000000000, 0}, {1234567890, 123456789}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (source_ / "data/a").c_str(), old_times, 0), 0);
  ASSERT_EQ(::utimensat(AT_FDCWD, (source_ / "bin").c_str(), old_times, 0), 0);
  ASSERT_EQ(::utimensat(AT_FDCWD, (source_ / "bin/sym").c_str(), old_times, AT_SYMLINK_NOFOLLOW),
            0);
  ASSERT_EQ(::chmod(source_.c_str(), 0711), 0);

  auto copied = CopyTree(source_, destination_);
  ASSERT_TRUE(copied) << copied.error().ToString();

  struct stat tool = Lstat(destination_ / "bin/tool");
  EXPECT_EQ(tool.st_mode & 07777, 04755u);
  EXPECT_EQ(tool.st_uid, 1000u);
  EXPECT_EQ(tool.st_gid, 1000u);
  EXPECT_EQ(ReadTestFile(destination_ / "bin/tool"), "#!/bin/sh\n");
  EXPECT_EQ(GetXattr(destination_ / "bin/tool", "user.note"), "hi");
  EXPECT_EQ(GetXattr(destination_ / "bin/tool", "trusted.t"), "t");

  struct stat a = Lstat(destination_ / "data/a");
  struct stat link = Lstat(destination_ / "bin/a-link");
  EXPECT_EQ(a.st_ino, link.st_ino);                       // still one file with two names
  EXPECT_NE(a.st_ino, Lstat(source_ / "data/a").st_ino);  // but not the source's file
  EXPECT_EQ(a.st_nlink, 2u);
  EXPECT_EQ(a.st_mtim.tv_sec, 1234567890);
  EXPECT_EQ(a.st_mtim.tv_nsec, 123456789);

  EXPECT_EQ(fs::read_symlink(destination_ / "bin/sym"), "../data/a");
  EXPECT_EQ(Lstat(destination_ / "bin/sym").st_mtim.tv_sec, 1234567890);
  EXPECT_EQ(fs::read_symlink(destination_ / "dangling"), "/nonexistent/target");
  EXPECT_EQ(Lstat(destination_ / "bin").st_mtim.tv_sec, 1234567890);  // set after its contents

  struct stat null = Lstat(destination_ / "null");
  EXPECT_TRUE(S_ISCHR(null.st_mode));
  EXPECT_EQ(null.st_rdev, makedev(1, 3));
  struct stat whiteout = Lstat(destination_ / "whiteout");
  EXPECT_TRUE(S_ISCHR(whiteout.st_mode));
  EXPECT_EQ(whiteout.st_rdev, makedev(0, 0));
  EXPECT_TRUE(S_ISFIFO(Lstat(destination_ / "fifo").st_mode));
  EXPECT_EQ(Lstat(destination_ / "fifo").st_mode & 07777, 0640u);

  EXPECT_EQ(Lstat(destination_ / "locked").st_mode & 07777, 0555u);
  EXPECT_EQ(ReadTestFile(destination_ / "locked/inside"), "x");
  EXPECT_EQ(Lstat(destination_ / "data").st_mode & 07777, 01777u);
  EXPECT_EQ(GetXattr(destination_ / "data", "trusted.overlay.opaque"), "y");
  EXPECT_EQ(Lstat(destination_).st_mode & 07777, 0711u);  // the top takes the source's mode

  // The copy is independent of the source.
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(destination_ / "data/a", "changed"));
  EXPECT_EQ(ReadTestFile(source_ / "data/a"), "hard");
}

TEST_F(TreeUtilTest, CopyTreeKeepsHolesOfSparseFiles) {
  constexpr off_t kMiB = 1 << 20;
  // A hole, 64 KiB of data at 1 MiB, a hole to 8 MiB; and a file that is one hole.
  {
    UniqueFd sparse(::open((source_ / "sparse").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644));
    ASSERT_TRUE(sparse);
    std::string data(64 * 1024, 'd');
    ASSERT_EQ(::pwrite(sparse.get(), data.data(), data.size(), kMiB),
              static_cast<ssize_t>(data.size()));
    ASSERT_EQ(::ftruncate(sparse.get(), 8 * kMiB), 0);
    UniqueFd hole(::open((source_ / "hole").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644));
    ASSERT_TRUE(hole);
    ASSERT_EQ(::ftruncate(hole.get(), 8 * kMiB), 0);
  }
  ASSERT_TRUE(CopyTree(source_, destination_));
  for (const char* name : {"sparse", "hole"}) {
    SCOPED_TRACE(name);
    struct stat st = Lstat(destination_ / name);
    EXPECT_EQ(st.st_size, 8 * kMiB);
    EXPECT_LT(st.st_blocks * 512, 256 * 1024) << "holes were filled with zeros";
    EXPECT_TRUE(ReadTestFile(destination_ / name) == ReadTestFile(source_ / name));
  }
  std::string copied = ReadTestFile(destination_ / "sparse");
  EXPECT_EQ(copied.substr(kMiB, 64 * 1024), std::string(64 * 1024, 'd'));
  EXPECT_EQ(copied.find_first_not_of('\0'), static_cast<size_t>(kMiB));
}

TEST_F(TreeUtilTest, CopyTreeRejectsANonDirectorySource) {
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(source_ / "file", "x"));
  auto copied = CopyTree(source_ / "file", destination_);
  ASSERT_FALSE(copied);
  EXPECT_EQ(copied.error().code(), ErrorCode::kInvalidArgument);
  auto missing = CopyTree(source_ / "missing", destination_);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST_F(TreeUtilTest, DiskUsageCountsEachInodeOnce) {
  auto empty = DiskUsage(source_);
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->inodes, 1);
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(source_ / "big", std::string(1 << 20, 'x')));
  ASSERT_EQ(::link((source_ / "big").c_str(), (source_ / "big2").c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(source_ / "dir/small", "s"));
  auto usage = DiskUsage(source_);
  ASSERT_TRUE(usage) << usage.error().ToString();
  EXPECT_EQ(usage->inodes, 4);  // top, big, dir, dir/small
  EXPECT_GE(usage->size, 1 << 20);
  EXPECT_LT(usage->size, (1 << 20) + (64 << 10));
  EXPECT_EQ(DiskUsage(source_ / "missing").error().code(), ErrorCode::kNotFound);
}

TEST_F(TreeUtilTest, DiskUsageStaysOnTheFilesystemOfItsDirectory) {
  if (::geteuid() != 0) GTEST_SKIP() << "mount(2) needs root";
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(source_ / "small", "s"));
  fs::create_directories(source_ / "mounted");
  ASSERT_EQ(::mount("tmpfs", (source_ / "mounted").c_str(), "tmpfs", 0, nullptr), 0);
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(source_ / "mounted/big", std::string(1 << 20, 'x')));
  auto usage = DiskUsage(source_);
  Usage best_effort = DiskUsageBestEffort({source_});
  (void)::umount2((source_ / "mounted").c_str(), MNT_DETACH);
  ASSERT_TRUE(usage) << usage.error().ToString();
  EXPECT_EQ(usage->inodes, 2);  // top, small: neither the mount point nor what it holds
  EXPECT_LT(usage->size, 1 << 20);
  EXPECT_EQ(best_effort, *usage);
}

TEST_F(TreeUtilTest, DiskUsageBestEffortCountsAnInodeOnceAcrossTreesAndSkipsMissing) {
  fs::create_directories(destination_);
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(source_ / "big", std::string(1 << 20, 'x')));
  ASSERT_EQ(::link((source_ / "big").c_str(), (destination_ / "big").c_str()), 0);
  auto source = DiskUsage(source_);
  auto destination = DiskUsage(destination_);
  ASSERT_TRUE(source && destination);
  const Usage together = DiskUsageBestEffort({source_, destination_, dir_->path() / "missing"});
  EXPECT_EQ(together.inodes, 3);  // two top directories and one file
  EXPECT_LT(together.size, source->size + destination->size);
  EXPECT_GE(together.size, 1 << 20);
  EXPECT_EQ(DiskUsageBestEffort({dir_->path() / "missing"}), Usage{});
}

TEST_F(TreeUtilTest, RemoveTreeHandlesReadOnlyDirectoriesAndMissingPaths) {
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(source_ / "a/b/c", "x"));
  ASSERT_EQ(::chmod((source_ / "a/b").c_str(), 0500), 0);
  ASSERT_EQ(::chmod((source_ / "a").c_str(), 0500), 0);
  ASSERT_TRUE(RemoveTree(source_));
  EXPECT_FALSE(Exists(source_));
  EXPECT_TRUE(RemoveTree(source_));
}

TEST_F(TreeUtilTest, SyncHelpers) {
  EXPECT_TRUE(SyncDirectory(source_));
  EXPECT_TRUE(SyncFilesystem(source_));
  EXPECT_EQ(SyncDirectory(source_ / "missing").error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace berth::snapshot
