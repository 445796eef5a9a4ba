#include "berth/archive/layer_applier.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "berth/archive/test_util.h"
#include "berth/base/file_util.h"
#include "berth/base/log.h"
#include "berth/image/media_types.h"
#include "testing/result_matchers.h"
#include "testing/temp_dir.h"

using ::berth::testing::FailsWith;

namespace berth::archive {
namespace {

namespace fs = std::filesystem;
namespace mt = berth::media_types;
using ::berth::testing::TempDir;
using testing::Compress;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::RawHeader;
using testing::RawTar;
using testing::TarOf;

struct StatResult {
  bool exists = false;
  struct stat st {};
};

StatResult Lstat(const fs::path& path) {
  StatResult result;
  result.exists = lstat(path.c_str(), &result.st) == 0;
  return result;
}

std::string Content(const fs::path& path) {
  auto content = ReadFile(path);
  return content ? *content : std::string("<unreadable>");
}

std::string Xattr(const fs::path& path, const char* name) {
  char buffer[256];
  ssize_t n = lgetxattr(path.c_str(), name, buffer, sizeof(buffer));
  return n < 0 ? std::string("<none>") : std::string(buffer, static_cast<size_t>(n));
}

void WriteText(const fs::path& path, std::string_view text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

// Everything under `dir`, described so that any change shows up in a comparison.
std::map<std::string, std::string> Describe(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& item : fs::recursive_directory_iterator(dir)) {
    struct stat st;
    lstat(item.path().c_str(), &st);
    std::string description =
        fmt::format("mode={:o} nlink={} size={} mtime={}.{}", st.st_mode, st.st_nlink, st.st_size,
                    st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    if (S_ISREG(st.st_mode)) description += " content=" + Content(item.path());
    out[item.path().string()] = description;
  }
  return out;
}

class LayerApplierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(scratch_, TempDir::Create("archive"));
    root_ = scratch_.Join("root");
    sentinel_ = scratch_.Join("sentinel");
    fs::create_directories(root_);
    WriteText(sentinel_ / "secret", "do not touch");
    WriteText(sentinel_ / "sub" / "file", "nested");
    sentinel_before_ = Describe(sentinel_);
  }

  // Asserts that nothing next to the root changed: the sentinel tree is intact and no new
  // entries appeared beside root/ and sentinel/.
  void ExpectOutsideUntouched() {
    EXPECT_EQ(Describe(sentinel_), sentinel_before_);
    size_t siblings = 0;
    for (const auto& item : fs::directory_iterator(scratch_.path())) {
      ++siblings;
      EXPECT_TRUE(item.path() == root_ || item.path() == sentinel_) << item.path();
    }
    EXPECT_EQ(siblings, 2u);
  }

  Result<ApplyResult> Apply(std::string_view blob, std::string_view media_type,
                            ApplyOptions options = {}, size_t step = 64 * 1024) {
    options.root = root_;
    options.media_type = std::string(media_type);
    BERTH_ASSIGN_OR_RETURN(auto applier, LayerApplier::Create(options));
    for (size_t at = 0; at < blob.size(); at += step) {
      BERTH_RETURN_IF_ERROR(applier->Write(blob.substr(at, step)));
    }
    return applier->Finish();
  }

  static constexpr ApplyThreading kEveryThreading[] = {
      ApplyThreading::kSingle, ApplyThreading::kTwoThreads, ApplyThreading::kThreeThreads};

  Result<ApplyResult> ApplyTar(std::string_view tar, ApplyOptions options = {}) {
    return Apply(tar, mt::kOciLayer, std::move(options));
  }

  TempDir scratch_;
  fs::path root_;
  fs::path sentinel_;
  std::map<std::string, std::string> sentinel_before_;
};

imagegen::FileTree EveryKind() {
  imagegen::FileTree tree;
  std::string long_dir(120, 'd');
  tree.AddDirectory("etc", {.mode = 0750,
                            .uid = 10,
                            .gid = 20,
                            .mtime_seconds = 1600000000,
                            .mtime_nanoseconds = 111})
      .AddFile("etc/passwd", "root:x:0:0\n",
               {.mode = 0640,
                .uid = 1000,
                .gid = 2000,
                .mtime_seconds = 1500000000,
                .mtime_nanoseconds = 123456789})
      .AddDirectory("bin", {.mtime_seconds = 1234})
      .AddFile("bin/ping", std::string(300'000, 'p'),
               {.mode = 04755,
                .uid = 0,
                .gid = 0,
                .xattrs = {{"security.capability",
                            std::string("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00"
                                        "\x00\x00\x00\x00\x00\x00\x00",
                                        20)},
                           {"user.comment", "hello"}}})
      .AddFile("bin/sgid", "x", {.mode = 02711, .gid = 5})
      .AddSymlink("bin/sh", "/bin/busybox", {.uid = 7, .gid = 8, .mtime_seconds = 99})
      .AddHardlink("bin/ping-hardlink", "bin/ping")
      .AddDirectory("tmp", {.mode = 01777})
      .AddCharDevice("dev/null", 1, 3, {.mode = 0666})
      .AddBlockDevice("dev/loop0", 7, 0, {.mode = 0660})
      .AddFifo("run/fifo", {.mode = 0600})
      .AddFile(long_dir + "/" + std::string(150, 'f'), "long name")
      .AddFile("empty", "");
  return tree;
}

struct ApplyCase {
  imagegen::Compression compression;
  std::string_view media_type;
  GzipBackend backend;
  ApplyThreading threading;
  std::string name;
};

class ApplyEveryKindTest : public LayerApplierTest,
                           public ::testing::WithParamInterface<ApplyCase> {};

TEST_P(ApplyEveryKindTest, AppliesEveryEntryKindWithMetadata) {
  std::string tar = TarOf(EveryKind());
  std::string blob = Compress(tar, GetParam().compression);
  auto result = Apply(blob, GetParam().media_type,
                      {.gzip_backend = GetParam().backend, .threading = GetParam().threading},
                      /*step=*/4093);
  ASSERT_OK(result);
  EXPECT_EQ(result->diff_id, Digest::Sha256Of(tar));
  EXPECT_EQ(result->uncompressed_bytes, tar.size());
  EXPECT_EQ(result->compressed_bytes, blob.size());
  EXPECT_EQ(result->entries, 13u);

  auto etc = Lstat(root_ / "etc");
  ASSERT_TRUE(etc.exists && S_ISDIR(etc.st.st_mode));
  EXPECT_EQ(etc.st.st_mode & 07777, 0750u);
  EXPECT_EQ(etc.st.st_uid, 10u);
  EXPECT_EQ(etc.st.st_gid, 20u);
  // Directory times are set after their contents were written.
  EXPECT_EQ(etc.st.st_mtim.tv_sec, 1600000000);
  EXPECT_EQ(etc.st.st_mtim.tv_nsec, 111);
  EXPECT_EQ(Lstat(root_ / "bin").st.st_mtim.tv_sec, 1234);

  auto passwd = Lstat(root_ / "etc/passwd");
  EXPECT_EQ(Content(root_ / "etc/passwd"), "root:x:0:0\n");
  EXPECT_EQ(passwd.st.st_mode & 07777, 0640u);
  EXPECT_EQ(passwd.st.st_uid, 1000u);
  EXPECT_EQ(passwd.st.st_gid, 2000u);
  EXPECT_EQ(passwd.st.st_mtim.tv_sec, 1500000000);
  EXPECT_EQ(passwd.st.st_mtim.tv_nsec, 123456789);

  auto ping = Lstat(root_ / "bin/ping");
  EXPECT_EQ(ping.st.st_mode & 07777, 04755u);
  EXPECT_EQ(ping.st.st_size, 300'000);
  EXPECT_EQ(Xattr(root_ / "bin/ping", "security.capability").size(), 20u);
  EXPECT_EQ(ping.st.st_nlink, 2u);
  EXPECT_EQ(Lstat(root_ / "bin/ping-hardlink").st.st_ino, ping.st.st_ino);
  auto sgid = Lstat(root_ / "bin/sgid");
  EXPECT_EQ(sgid.st.st_mode & 07777, 02711u);
  EXPECT_EQ(sgid.st.st_gid, 5u);

  auto sh = Lstat(root_ / "bin/sh");
  ASSERT_TRUE(S_ISLNK(sh.st.st_mode));
  EXPECT_EQ(fs::read_symlink(root_ / "bin/sh"), "/bin/busybox");
  EXPECT_EQ(sh.st.st_uid, 7u);
  EXPECT_EQ(sh.st.st_gid, 8u);
  EXPECT_EQ(sh.st.st_mtim.tv_sec, 99);

  EXPECT_EQ(Lstat(root_ / "tmp").st.st_mode & 07777, 01777u);
  auto null = Lstat(root_ / "dev/null");
  ASSERT_TRUE(S_ISCHR(null.st.st_mode));
  EXPECT_EQ(null.st.st_rdev, makedev(1, 3));
  EXPECT_EQ(null.st.st_mode & 07777, 0666u);
  auto loop = Lstat(root_ / "dev/loop0");
  ASSERT_TRUE(S_ISBLK(loop.st.st_mode));
  EXPECT_EQ(loop.st.st_rdev, makedev(7, 0));
  EXPECT_TRUE(S_ISFIFO(Lstat(root_ / "run/fifo").st.st_mode));
  EXPECT_EQ(Content(root_ / std::string(120, 'd') / std::string(150, 'f')), "long name");
  EXPECT_EQ(Lstat(root_ / "empty").st.st_size, 0);
  ExpectOutsideUntouched();
}

INSTANTIATE_TEST_SUITE_P(
    Formats, ApplyEveryKindTest,
    ::testing::Values(ApplyCase{imagegen::Compression::kGzip, mt::kOciLayerGzip, GzipBackend::kIsal,
                                ApplyThreading::kSingle, "gzip_isal"},
                      ApplyCase{imagegen::Compression::kGzip, mt::kDockerLayerGzip,
                                GzipBackend::kZlib, ApplyThreading::kSingle, "gzip_zlib"},
                      ApplyCase{imagegen::Compression::kZstd, mt::kOciLayerZstd, GzipBackend::kIsal,
                                ApplyThreading::kSingle, "zstd"},
                      ApplyCase{imagegen::Compression::kNone, mt::kOciLayer, GzipBackend::kIsal,
                                ApplyThreading::kSingle, "none"},
                      ApplyCase{imagegen::Compression::kGzip, mt::kOciLayerGzip, GzipBackend::kIsal,
                                ApplyThreading::kTwoThreads, "gzip_two_threads"},
                      ApplyCase{imagegen::Compression::kGzip, mt::kOciLayerGzip, GzipBackend::kIsal,
                                ApplyThreading::kThreeThreads, "gzip_three_threads"},
                      ApplyCase{imagegen::Compression::kZstd, mt::kOciLayerZstd, GzipBackend::kIsal,
                                ApplyThreading::kThreeThreads, "zstd_three_threads"}),
    [](const auto& param_info) { return param_info.param.name; });

TEST_F(LayerApplierTest, OverlayWhiteoutsBecomeDevicesAndOpaqueXattr) {
  WriteText(root_ / "var/cache/kept", "upper dir content stays");
  imagegen::FileTree tree;
  tree.AddDirectory("etc")
      .AddWhiteout("etc/motd")
      .AddDirectory("var/cache")
      .AddOpaqueWhiteout("var/cache");
  auto result = ApplyTar(TarOf(tree), {.whiteout_mode = WhiteoutMode::kOverlay});
  ASSERT_OK(result);
  auto motd = Lstat(root_ / "etc/motd");
  ASSERT_TRUE(motd.exists);
  EXPECT_TRUE(S_ISCHR(motd.st.st_mode));
  EXPECT_EQ(motd.st.st_rdev, makedev(0, 0));
  EXPECT_FALSE(Lstat(root_ / "etc/.wh.motd").exists);
  EXPECT_EQ(Xattr(root_ / "var/cache", "trusted.overlay.opaque"), "y");
  EXPECT_FALSE(Lstat(root_ / "var/cache/.wh..wh..opq").exists);
  EXPECT_TRUE(Lstat(root_ / "var/cache/kept").exists);
}

TEST_F(LayerApplierTest, ArchiveCannotForgeOverlayXattrs) {
  imagegen::FileTree tree;
  tree.AddDirectory("d", {.xattrs = {{"trusted.overlay.opaque", "y"}}});
  auto result = ApplyTar(TarOf(tree));
  ASSERT_OK(result);
  EXPECT_EQ(Xattr(root_ / "d", "trusted.overlay.opaque"), "<none>");
}

TEST_F(LayerApplierTest, DeleteModeRemovesLowerEntriesOnly) {
  // The lower layers' content, already in the root (native snapshots).
  WriteText(root_ / "etc/motd", "lower");
  WriteText(root_ / "etc/keep", "lower");
  WriteText(root_ / "var/cache/a", "lower");
  WriteText(root_ / "var/cache/sub/b", "lower");
  imagegen::FileTree tree;
  tree.AddWhiteout("etc/motd")
      .AddDirectory("var/cache")
      .AddFile("var/cache/new", "this layer")
      .AddOpaqueWhiteout("var/cache")  // After "new": must not delete it.
      .AddFile("added", "x")
      .AddWhiteout("added");  // Same-layer whiteout: only lower layers are hidden.
  auto result = ApplyTar(TarOf(tree), {.whiteout_mode = WhiteoutMode::kDelete});
  ASSERT_OK(result);
  EXPECT_FALSE(Lstat(root_ / "etc/motd").exists);
  EXPECT_TRUE(Lstat(root_ / "etc/keep").exists);
  EXPECT_FALSE(Lstat(root_ / "var/cache/a").exists);
  EXPECT_FALSE(Lstat(root_ / "var/cache/sub").exists);
  EXPECT_EQ(Content(root_ / "var/cache/new"), "this layer");
  EXPECT_TRUE(Lstat(root_ / "added").exists);
  EXPECT_FALSE(Lstat(root_ / "var/cache/.wh..wh..opq").exists);
}

// Native snapshots apply a layer onto a copy of its parent: a lower directory the layer changes
// without an entry of its own keeps its times (as umoci's unpack), whatever the layer does in it.
TEST_F(LayerApplierTest, DeleteModeKeepsTheTimesOfLowerDirectoriesItChanges) {
  for (const char* dir : {"gets-file", "gets-dir", "loses-file", "goes-opaque", "has-entry"}) {
    WriteText(root_ / dir / "old", "lower");
  }
  WriteText(root_ / "untouched/old", "lower");
  auto set_mtime = [&](const char* dir, time_t seconds) {
    timespec times[2] = {{seconds, 0}, {seconds, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, (root_ / dir).c_str(), times, 0), 0) << dir;
  };
  for (const char* dir :
       {"gets-file", "gets-dir", "loses-file", "goes-opaque", "has-entry", "untouched"}) {
    set_mtime(dir, 1000);
  }
  imagegen::FileTree tree;
  tree.AddFile("gets-file/new", "x", {.mtime_seconds = 5000})
      .AddFile("gets-dir/sub/deeper/new", "x", {.mtime_seconds = 5000})
      .AddWhiteout("loses-file/old")
      .AddOpaqueWhiteout("goes-opaque")
      .AddFile("has-entry/new", "x", {.mtime_seconds = 5000})
      .AddDirectory("has-entry", {.mtime_seconds = 7000});
  auto result = ApplyTar(TarOf(tree), {.whiteout_mode = WhiteoutMode::kDelete});
  ASSERT_OK(result);
  EXPECT_TRUE(Lstat(root_ / "gets-dir/sub/deeper/new").exists);
  EXPECT_FALSE(Lstat(root_ / "loses-file/old").exists);
  EXPECT_FALSE(Lstat(root_ / "goes-opaque/old").exists);
  for (const char* dir : {"gets-file", "gets-dir", "loses-file", "goes-opaque", "untouched"}) {
    EXPECT_EQ(Lstat(root_ / dir).st.st_mtim.tv_sec, 1000) << dir;
  }
  // A directory the layer lists takes the layer's times, wherever its entry comes.
  EXPECT_EQ(Lstat(root_ / "has-entry").st.st_mtim.tv_sec, 7000);
}

TEST_F(LayerApplierTest, ReplacesFilesByDirectoriesAndBack) {
  WriteText(root_ / "was-file", "file");
  WriteText(root_ / "was-dir/child", "child");
  fs::create_symlink("/nowhere", root_ / "was-link");
  fs::create_directories(root_ / "existing");
  chmod((root_ / "existing").c_str(), 0700);
  imagegen::FileTree tree;
  tree.AddDirectory("was-file")
      .AddFile("was-file/inside", "now a dir")
      .AddFile("was-dir", "now a file")
      .AddFile("was-link", "now a file")
      .AddDirectory("existing", {.mode = 0755, .uid = 3, .gid = 4});
  auto result = ApplyTar(TarOf(tree), {.whiteout_mode = WhiteoutMode::kDelete});
  ASSERT_OK(result);
  EXPECT_EQ(Content(root_ / "was-file/inside"), "now a dir");
  EXPECT_EQ(Content(root_ / "was-dir"), "now a file");
  EXPECT_TRUE(S_ISREG(Lstat(root_ / "was-link").st.st_mode));
  auto existing = Lstat(root_ / "existing");
  EXPECT_EQ(existing.st.st_mode & 07777, 0755u);
  EXPECT_EQ(existing.st.st_uid, 3u);
  EXPECT_EQ(existing.st.st_gid, 4u);
}

TEST_F(LayerApplierTest, HardlinkToLowerLayerFile) {
  // Native: the lower file is in the root, so the link is a real link.
  WriteText(root_ / "usr/bin/python3.11", "interpreter");
  imagegen::FileTree tree;
  tree.AddHardlink("usr/bin/python3", "usr/bin/python3.11");
  ASSERT_TRUE(ApplyTar(TarOf(tree), {.whiteout_mode = WhiteoutMode::kDelete}).has_value());
  EXPECT_EQ(Lstat(root_ / "usr/bin/python3").st.st_ino,
            Lstat(root_ / "usr/bin/python3.11").st.st_ino);
}

TEST_F(LayerApplierTest, OverlayHardlinkToLowerLayerIsCopiedOrRefused) {
  ASSERT_OK_AND_ASSIGN(TempDir lower_dir, TempDir::Create("archive"));
  WriteText(lower_dir.Join("usr/bin/tool"), "lower tool");
  chmod((lower_dir.Join("usr/bin/tool")).c_str(), 0751);
  imagegen::FileTree tree;
  tree.AddHardlink("usr/bin/tool-link", "usr/bin/tool");
  std::string tar = TarOf(tree);

  auto refused = ApplyTar(tar, {.whiteout_mode = WhiteoutMode::kOverlay});
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), ErrorCode::kFailedPrecondition);
  // What is wrong with the layer, not an internal API to call differently.
  EXPECT_THAT(refused.error().ToString(),
              HasSubstr("hardlink \"usr/bin/tool-link\" links to \"usr/bin/tool\", which is not "
                        "an earlier entry of this layer"));
  EXPECT_THAT(refused.error().ToString(), Not(HasSubstr("lower_dirs")));
  auto missing_everywhere = ApplyTar(tar, {.whiteout_mode = WhiteoutMode::kDelete});
  ASSERT_FALSE(missing_everywhere.has_value());
  EXPECT_EQ(missing_everywhere.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_THAT(missing_everywhere.error().ToString(),
              HasSubstr("which neither this layer (as an earlier entry) nor the layers below it "
                        "contain"));
  EXPECT_THAT(missing_everywhere.error().ToString(), Not(HasSubstr("lower_dirs")));

  auto copied =
      ApplyTar(tar, {.whiteout_mode = WhiteoutMode::kOverlay, .lower_dirs = {lower_dir.path()}});
  ASSERT_OK(copied);
  EXPECT_EQ(Content(root_ / "usr/bin/tool-link"), "lower tool");
  EXPECT_EQ(Lstat(root_ / "usr/bin/tool-link").st.st_mode & 07777, 0751u);
  EXPECT_EQ(Lstat(lower_dir.Join("usr/bin/tool")).st.st_nlink, 1u);
}

// The copy is the lower file in all but the inode: its file capabilities and other xattrs (a
// copy without security.capability would break ping), and its holes.
TEST_F(LayerApplierTest, OverlayHardlinkCopyKeepsXattrsAndHoles) {
  ASSERT_OK_AND_ASSIGN(TempDir lower_dir, TempDir::Create("archive"));
  const fs::path ping = lower_dir.Join("bin/ping");
  WriteText(ping, "ping");
  const std::string capability(
      "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00",
      20);
  ASSERT_EQ(lsetxattr(ping.c_str(), "security.capability", capability.data(), capability.size(), 0),
            0);
  ASSERT_EQ(lsetxattr(ping.c_str(), "user.origin", "lower", 5, 0), 0);
  const fs::path sparse = lower_dir.Join("var/lib/sparse");
  WriteText(sparse, "head");
  fs::resize_file(sparse, 16 << 20);
  imagegen::FileTree tree;
  tree.AddHardlink("bin/ping-link", "bin/ping")
      .AddHardlink("var/lib/sparse-link", "var/lib/sparse");
  auto copied = ApplyTar(
      TarOf(tree), {.whiteout_mode = WhiteoutMode::kOverlay, .lower_dirs = {lower_dir.path()}});
  ASSERT_OK(copied);
  EXPECT_EQ(Xattr(root_ / "bin/ping-link", "security.capability"), capability);
  EXPECT_EQ(Xattr(root_ / "bin/ping-link", "user.origin"), "lower");
  auto link = Lstat(root_ / "var/lib/sparse-link");
  EXPECT_EQ(link.st.st_size, 16 << 20);
  EXPECT_LT(link.st.st_blocks * 512, 1 << 20) << "the 16 MiB hole was filled";
  EXPECT_EQ(Content(root_ / "var/lib/sparse-link").substr(0, 5), std::string("head\0", 5));
}

TEST_F(LayerApplierTest, ImplicitParentDirectoriesAreReported) {
  imagegen::FileTree tree;
  tree.AddFile("usr/bin/x", "x", {.mtime_seconds = 1'000'000'000})
      .AddWhiteout("etc/foo")
      .AddFile("opt/a/f", "f", {.mtime_seconds = 1'100'000'000})
      .AddDirectory("opt", {.mode = 0750, .mtime_seconds = 900'000'000});  // Defined later.
  auto result = ApplyTar(TarOf(tree), {.whiteout_mode = WhiteoutMode::kOverlay});
  ASSERT_OK(result);
  EXPECT_EQ(result->implicit_dirs, (std::vector<std::string>{"usr", "etc", "usr/bin", "opt/a"}));
  // Created 0755, with the newest mtime of their children (not the unpack time); a whiteout
  // is not a child that counts, so "etc" keeps the time it was created.
  auto bin = Lstat(root_ / "usr/bin");
  EXPECT_EQ(bin.st.st_mode & 07777, 0755u);
  EXPECT_EQ(bin.st.st_mtim.tv_sec, 1'000'000'000);
  EXPECT_EQ(Lstat(root_ / "usr").st.st_mtim.tv_sec, 1'000'000'000);
  EXPECT_EQ(Lstat(root_ / "opt/a").st.st_mtim.tv_sec, 1'100'000'000);
  EXPECT_GT(Lstat(root_ / "etc").st.st_mtim.tv_sec, 1'600'000'000);
  // The explicit entry wins for "opt".
  auto opt = Lstat(root_ / "opt");
  EXPECT_EQ(opt.st.st_mode & 07777, 0750u);
  EXPECT_EQ(opt.st.st_mtim.tv_sec, 900'000'000);
}

// A directory archived twice ends with the second entry's attributes, its times included, as
// containerd's applier leaves it (it sets directory times in archive order).
TEST_F(LayerApplierTest, ADirectoryArchivedTwiceTakesTheLastEntrysTimesAndMode) {
  imagegen::FileTree tree;
  tree.AddDirectory("d", {.mode = 0700, .mtime_seconds = 1'000'000'000})
      .AddFile("d/f", "f", {.mtime_seconds = 1'100'000'000})
      .AddDirectory("d", {.mode = 0751, .mtime_seconds = 1'200'000'000});
  ASSERT_OK(ApplyTar(TarOf(tree), {.whiteout_mode = WhiteoutMode::kOverlay}));
  auto d = Lstat(root_ / "d");
  EXPECT_EQ(d.st.st_mode & 07777, 0751u);
  EXPECT_EQ(d.st.st_mtim.tv_sec, 1'200'000'000);
}

TEST_F(LayerApplierTest, ImplicitDirectoriesReplacedLaterAreNotReported) {
  imagegen::FileTree tree;
  tree.AddFile("a/b/f", "f").AddFile("a/b", "now a file");
  auto result = ApplyTar(TarOf(tree), {.whiteout_mode = WhiteoutMode::kOverlay});
  ASSERT_OK(result);
  EXPECT_EQ(result->implicit_dirs, (std::vector<std::string>{"a"}));
}

TEST_F(LayerApplierTest, ImplicitDirectoriesInheritFromLowerDirs) {
  // Two lower layers, topmost first: "etc" from the top one, "var/lib" only in the bottom one,
  // "usr" whited out by the top one, "srv/x" hidden by an opaque "srv" in the top one.
  ASSERT_OK_AND_ASSIGN(TempDir top, TempDir::Create("archive"));
  ASSERT_OK_AND_ASSIGN(TempDir bottom, TempDir::Create("archive"));
  fs::create_directories(top.path() / "etc");
  fs::create_directories(top.path() / "srv");
  ASSERT_EQ(setxattr((top.path() / "srv").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  ASSERT_EQ(mknod((top.path() / "usr").c_str(), S_IFCHR | 0, makedev(0, 0)), 0);
  fs::create_directories(bottom.path() / "etc");
  fs::create_directories(bottom.path() / "var/lib");
  fs::create_directories(bottom.path() / "usr");
  fs::create_directories(bottom.path() / "srv/x");
  auto set = [](const fs::path& dir, mode_t mode, uid_t uid, time_t mtime) {
    ASSERT_EQ(chown(dir.c_str(), uid, uid + 1), 0);
    ASSERT_EQ(chmod(dir.c_str(), mode), 0);
    timespec times[2] = {{mtime, 0}, {mtime, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, dir.c_str(), times, 0), 0);
  };
  set(top.path() / "etc", 0700, 1000, 978'307'200);  // 2001-01-01
  set(bottom.path() / "etc", 0755, 7, 1);
  set(bottom.path() / "var", 0711, 8, 2);
  set(bottom.path() / "var/lib", 0750, 9, 3);
  set(bottom.path() / "usr", 0700, 10, 4);
  set(bottom.path() / "srv/x", 0700, 11, 5);

  imagegen::FileTree tree;
  tree.AddFile("etc/newfile", "n", {.mtime_seconds = 1'500'000'000})
      .AddWhiteout("var/lib/old")
      .AddFile("usr/f", "f")
      .AddFile("srv/x/f", "f");
  auto result = ApplyTar(TarOf(tree), {.whiteout_mode = WhiteoutMode::kOverlay,
                                       .lower_dirs = {top.path(), bottom.path()}});
  ASSERT_OK(result);
  EXPECT_EQ(result->implicit_dirs,
            (std::vector<std::string>{"etc", "var", "usr", "srv", "var/lib", "srv/x"}));
  auto etc = Lstat(root_ / "etc");
  EXPECT_EQ(etc.st.st_mode & 07777, 0700u);
  EXPECT_EQ(etc.st.st_uid, 1000u);
  EXPECT_EQ(etc.st.st_gid, 1001u);
  EXPECT_EQ(etc.st.st_mtim.tv_sec, 978'307'200);
  auto lib = Lstat(root_ / "var/lib");
  EXPECT_EQ(lib.st.st_mode & 07777, 0750u);
  EXPECT_EQ(lib.st.st_uid, 9u);
  EXPECT_EQ(lib.st.st_mtim.tv_sec, 3);
  EXPECT_EQ(Lstat(root_ / "var").st.st_uid, 8u);
  // Whited out above the layer that has it: a fresh directory.
  auto usr = Lstat(root_ / "usr");
  EXPECT_EQ(usr.st.st_mode & 07777, 0755u);
  EXPECT_EQ(usr.st.st_uid, 0u);
  // "srv/x" is hidden by the opaque "srv" of the top layer and stays as created.
  auto srv_x = Lstat(root_ / "srv/x");
  EXPECT_EQ(srv_x.st.st_mode & 07777, 0755u);
  EXPECT_EQ(srv_x.st.st_uid, 0u);
  // Attributes only: not the opaque xattr of the top layer's "srv".
  EXPECT_EQ(Xattr(root_ / "srv", "trusted.overlay.opaque"), "<none>");
}

// POSIX ACL xattr tags and the value of system.posix_acl_access/_default (version 2, then
// little-endian {tag, permissions, id} entries sorted by tag and id).
enum AclTag : uint16_t {
  kUserObj = 0x01,
  kUser = 0x02,
  kGroupObj = 0x04,
  kGroup = 0x08,
  kMask = 0x10,
  kOther = 0x20,
};
struct AclEntry {
  AclTag tag;
  uint16_t permissions;
  uint32_t id = 0xffffffff;
};
std::string AclXattr(std::initializer_list<AclEntry> entries) {
  std::string value;
  auto put = [&](auto number) {
    value.append(reinterpret_cast<const char*>(&number), sizeof(number));
  };
  put(uint32_t{2});
  for (const AclEntry& entry : entries) {
    put(static_cast<uint16_t>(entry.tag));
    put(entry.permissions);
    put(entry.id);
  }
  return value;
}

std::map<std::string, std::string> Xattrs(const fs::path& path) {
  auto xattrs = ReadXattrs(path, /*follow_symlinks=*/false);
  EXPECT_OK(xattrs);
  return xattrs ? *xattrs : std::map<std::string, std::string>{};
}

// A lower directory with user.*, trusted.* and POSIX ACLs (access and default).
void MakeDirectoryWithXattrs(const fs::path& dir) {
  fs::create_directories(dir);
  ASSERT_EQ(chmod(dir.c_str(), 0750), 0);
  const std::string access =
      AclXattr({{kUserObj, 7}, {kUser, 5, 1234}, {kGroupObj, 5}, {kMask, 5}, {kOther, 0}});
  const std::string defaults =
      AclXattr({{kUserObj, 7}, {kGroupObj, 5}, {kGroup, 7, 42}, {kMask, 7}, {kOther, 0}});
  for (const auto& [name, value] :
       std::map<std::string, std::string>{{"user.comment", "lower"},
                                          {"trusted.origin", "lower-layer"},
                                          {"system.posix_acl_access", access},
                                          {"system.posix_acl_default", defaults}}) {
    ASSERT_EQ(lsetxattr(dir.c_str(), name.c_str(), value.data(), value.size(), 0), 0)
        << name << ": " << strerror(errno);
  }
}

// A directory the layer needs but lacks must show what the lower directory has in the merged
// view, xattrs included, as overlayfs copy-up (and containerd, umoci) keep them: user.*,
// trusted.*, ACLs. An xattr the lower directory lacks (here a default ACL that mkdir inherited
// from the upper parent) is removed.
TEST_F(LayerApplierTest, ImplicitDirectoriesInheritLowerXattrsAndAcls) {
  if (geteuid() != 0) GTEST_SKIP() << "trusted.* xattrs need root";
  ASSERT_OK_AND_ASSIGN(TempDir lower, TempDir::Create("archive"));
  MakeDirectoryWithXattrs(lower.Join("srv/data"));
  fs::create_directories(lower.Join("srv/plain"));
  const std::string upper_default = AclXattr({{kUserObj, 7}, {kGroupObj, 7}, {kOther, 7}});
  imagegen::FileTree tree;
  tree.AddDirectory("srv", {.xattrs = {{"system.posix_acl_default", upper_default}}})
      .AddFile("srv/data/new", "n")
      .AddFile("srv/plain/new", "n");
  auto result = ApplyTar(TarOf(tree),
                         {.whiteout_mode = WhiteoutMode::kOverlay, .lower_dirs = {lower.path()}});
  ASSERT_OK(result);
  EXPECT_EQ(result->implicit_dirs, (std::vector<std::string>{"srv/data", "srv/plain"}));
  EXPECT_EQ(Xattrs(root_ / "srv/data"), Xattrs(lower.Join("srv/data")));
  EXPECT_EQ(Xattrs(root_ / "srv/data").size(), 4u);
  EXPECT_EQ(Lstat(root_ / "srv/data").st.st_mode, Lstat(lower.Join("srv/data")).st.st_mode);
  EXPECT_EQ(Xattrs(root_ / "srv/plain"), Xattrs(lower.Join("srv/plain")));
  EXPECT_EQ(Xattrs(root_ / "srv"),
            (std::map<std::string, std::string>{{"system.posix_acl_default", upper_default}}));
}

// An entry created in a directory with a default ACL gets the mode and ACLs the archive gives
// it, not ones inherited from the directory (the kernel applies the default ACL at creation),
// as umoci's unpack does.
TEST_F(LayerApplierTest, NewEntriesDoNotKeepAclsInheritedFromTheirDirectory) {
  const std::string defaults =
      AclXattr({{kUserObj, 7}, {kGroupObj, 5}, {kGroup, 7, 42}, {kMask, 7}, {kOther, 0}});
  const std::string access =
      AclXattr({{kUserObj, 6}, {kUser, 4, 1234}, {kGroupObj, 4}, {kMask, 4}, {kOther, 0}});
  imagegen::FileTree tree;
  tree.AddDirectory("srv", {.xattrs = {{"system.posix_acl_default", defaults}}})
      .AddFile("srv/file", "f", {.mode = 0644})
      .AddDirectory("srv/dir", {.mode = 0755})
      .AddFile("srv/own-acl", "a", {.mode = 0640, .xattrs = {{"system.posix_acl_access", access}}})
      .AddFifo("srv/fifo", {.mode = 0644});
  for (WhiteoutMode mode : {WhiteoutMode::kOverlay, WhiteoutMode::kDelete}) {
    fs::remove_all(root_);
    fs::create_directories(root_);
    auto result = ApplyTar(TarOf(tree), {.whiteout_mode = mode});
    ASSERT_OK(result);
    EXPECT_EQ(Xattrs(root_ / "srv"),
              (std::map<std::string, std::string>{{"system.posix_acl_default", defaults}}));
    for (const char* path : {"srv/file", "srv/dir", "srv/fifo"}) {
      EXPECT_EQ(Xattrs(root_ / path), (std::map<std::string, std::string>{})) << path;
    }
    EXPECT_EQ(Lstat(root_ / "srv/file").st.st_mode & 07777, 0644u);
    EXPECT_EQ(Lstat(root_ / "srv/dir").st.st_mode & 07777, 0755u);
    EXPECT_EQ(Lstat(root_ / "srv/fifo").st.st_mode & 07777, 0644u);
    EXPECT_EQ(Xattrs(root_ / "srv/own-acl"),
              (std::map<std::string, std::string>{{"system.posix_acl_access", access}}));
  }
}

// Native snapshots apply onto a copy of the parent: a lower directory the layer writes into
// keeps its xattrs.
TEST_F(LayerApplierTest, DeleteModeKeepsTheXattrsOfLowerDirectories) {
  if (geteuid() != 0) GTEST_SKIP() << "trusted.* xattrs need root";
  MakeDirectoryWithXattrs(root_ / "srv/data");
  const auto before = Xattrs(root_ / "srv/data");
  imagegen::FileTree tree;
  tree.AddFile("srv/data/new", "n").AddWhiteout("srv/data/gone");
  auto result = ApplyTar(TarOf(tree), {.whiteout_mode = WhiteoutMode::kDelete});
  ASSERT_OK(result);
  EXPECT_EQ(before.size(), 4u);
  EXPECT_EQ(Xattrs(root_ / "srv/data"), before);
}

// At trace level the applier logs each entry's decision: a whiteout, an opaque marker, a created
// file and an implicit directory each show up. At info, nothing.
TEST_F(LayerApplierTest, TraceLogShowsEachEntryDecision) {
  imagegen::FileTree tree;
  tree.AddDirectory("etc")
      .AddFile("etc/hosts", "h")
      .AddWhiteout("etc/motd")
      .AddOpaqueWhiteout("var/cache")
      .AddFile("usr/bin/x", "x");
  std::ostringstream captured;
  ASSERT_TRUE(log::Init({.level = log::Level::kTrace}).has_value());
  log::AddSinkForTest(std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
  auto traced = ApplyTar(TarOf(tree), {.whiteout_mode = WhiteoutMode::kOverlay});
  ASSERT_TRUE(log::Init({.level = log::Level::kInfo}).has_value());  // Drops the capture sink.
  ASSERT_OK(traced);
  const std::string trace = captured.str();
  EXPECT_THAT(trace, HasSubstr("archive.entry path=etc/.wh.motd type=regular action=whiteout "
                               "detail=\"character device 0/0 hides \\\"etc/motd\\\"\""));
  EXPECT_THAT(trace, HasSubstr("archive.entry path=var/cache/.wh..wh..opq type=regular "
                               "action=opaque"));
  EXPECT_THAT(trace, HasSubstr("archive.entry path=etc/hosts type=regular action=create"));
  EXPECT_THAT(trace, HasSubstr("archive.implicit_dir path=usr/bin action=create"));

  fs::remove_all(root_);
  fs::create_directories(root_);
  std::ostringstream quiet;
  log::AddSinkForTest(std::make_shared<spdlog::sinks::ostream_sink_mt>(quiet));
  auto untraced = ApplyTar(TarOf(tree), {.whiteout_mode = WhiteoutMode::kOverlay});
  ASSERT_TRUE(log::Init({.level = log::Level::kInfo}).has_value());
  ASSERT_OK(untraced);
  EXPECT_EQ(quiet.str(), "");
}

TEST_F(LayerApplierTest, SparseFileIsWrittenSparse) {
  std::string map = "2\n4096\n4\n10737418236\n0\n";
  std::string stored = map + std::string(512 - map.size(), '\0') + "DATA";
  RawTar tar;
  tar.AddPax({{"GNU.sparse.major", "1"},
              {"GNU.sparse.minor", "0"},
              {"GNU.sparse.name", "disk.img"},
              {"GNU.sparse.realsize", "10737418240"}});
  tar.Add({.name = "GNUSparseFile.0/disk.img", .size = stored.size()}, stored);
  auto result = ApplyTar(tar.Finish());
  ASSERT_OK(result);
  auto disk = Lstat(root_ / "disk.img");
  EXPECT_EQ(disk.st.st_size, 10737418240);
  EXPECT_LT(disk.st.st_blocks * 512, 1 << 20);  // Not 10 GB on disk.
  int fd = open((root_ / "disk.img").c_str(), O_RDONLY);
  char buffer[8] = {};
  EXPECT_EQ(pread(fd, buffer, 4, 4096), 4);
  close(fd);
  EXPECT_EQ(std::string(buffer), "DATA");
}

TEST_F(LayerApplierTest, ErrorsMapToClearCodes) {
  std::string tar = TarOf(EveryKind());
  std::string gzip = Compress(tar, imagegen::Compression::kGzip);
  std::string zstd = Compress(tar, imagegen::Compression::kZstd);

  auto mismatch = Apply(zstd, mt::kOciLayerGzip);
  ASSERT_FALSE(mismatch.has_value());
  EXPECT_EQ(mismatch.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(mismatch.error().message().find("says gzip but the data starts with zstd magic"),
            std::string::npos);

  auto unknown = Apply(gzip, "application/vnd.oci.image.layer.v1.tar+lz4");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code(), ErrorCode::kUnimplemented);

  auto truncated_gzip = Apply(std::string_view(gzip).substr(0, gzip.size() / 2), mt::kOciLayerGzip);
  ASSERT_FALSE(truncated_gzip.has_value());
  EXPECT_EQ(truncated_gzip.error().code(), ErrorCode::kDataLoss);
  EXPECT_NE(truncated_gzip.error().message().find("truncated"), std::string::npos);

  // A complete gzip stream of an incomplete tar.
  std::string cut = Compress(std::string_view(tar).substr(0, 3000), imagegen::Compression::kGzip);
  auto truncated_tar = Apply(cut, mt::kOciLayerGzip, {.threading = ApplyThreading::kTwoThreads});
  ASSERT_FALSE(truncated_tar.has_value());
  EXPECT_EQ(truncated_tar.error().code(), ErrorCode::kDataLoss);
  EXPECT_NE(truncated_tar.error().message().find("tar archive is truncated"), std::string::npos);

  std::string corrupt_header = tar;
  corrupt_header[0] ^= 0x01;
  auto bad_checksum = ApplyTar(corrupt_header);
  ASSERT_FALSE(bad_checksum.has_value());
  EXPECT_EQ(bad_checksum.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(bad_checksum.error().message().find("checksum"), std::string::npos);
}

// The inflate check runs with the first chunk and then once per interval, not per write, and
// its error stops the apply before the bytes that crossed the line are untarred.
TEST_F(LayerApplierTest, InflateCheckRunsPerIntervalAndItsErrorStopsTheApply) {
  imagegen::FileTree tree;
  tree.AddFile("zeros", std::string(20 << 20, '\0'));
  const std::string blob = Compress(TarOf(tree), imagegen::Compression::kGzip);
  for (ApplyThreading threading : kEveryThreading) {
    fs::remove_all(root_);
    fs::create_directories(root_);
    std::vector<uint64_t> seen;
    ApplyOptions options{.threading = threading, .inflate_check_interval = 4 << 20};
    options.inflate_check = [&](uint64_t inflated) -> Result<void> {
      seen.push_back(inflated);
      return Ok();
    };
    auto applied = Apply(blob, mt::kOciLayerGzip, options);
    ASSERT_OK(applied);
    ASSERT_GE(seen.size(), 5u);
    EXPECT_LE(seen.size(), 6u);  // 20 MiB + the tar's headers, checked every 4 MiB
    EXPECT_LE(seen.front(), 1u << 20);
    for (size_t i = 1; i < seen.size(); ++i) EXPECT_GE(seen[i] - seen[i - 1], 4u << 20);

    options.inflate_check = [](uint64_t inflated) -> Result<void> {
      if (inflated < (8 << 20)) return Ok();
      return Fail(ErrorCode::kResourceExhausted, "reserve crossed");
    };
    fs::remove(root_ / "zeros");  // what the successful apply wrote
    auto stopped = Apply(blob, mt::kOciLayerGzip, options);
    ASSERT_FALSE(stopped.has_value());
    EXPECT_EQ(stopped.error().code(), ErrorCode::kResourceExhausted);
    EXPECT_EQ(stopped.error().message(), "reserve crossed");
    // With threads the untar worker may be stopped before it even created the file.
    struct stat st {};
    if (::lstat((root_ / "zeros").c_str(), &st) == 0) {
      EXPECT_LE(st.st_size, 9 << 20);
    }
  }
}

// Whichever thread a stage runs on, a failure is reported as that stage's own error (not as the
// next stage having stopped), from Write() or Finish(), and again on every later call.
TEST_F(LayerApplierTest, EachStagesErrorSurfacesWhateverTheThreads) {
  imagegen::FileTree tree;
  tree.AddFile("big", std::string(12 << 20, 'x')).AddFile("etc/passwd", "root");
  const std::string tar = TarOf(tree);
  const std::string gzip = Compress(tar, imagegen::Compression::kGzip);
  std::string corrupt = gzip;
  for (size_t i = corrupt.size() / 2; i < corrupt.size() / 2 + 64; ++i) corrupt[i] ^= 0x5a;
  std::string bad_header = tar;
  bad_header[0] ^= 0x01;
  const std::string bad_tar = Compress(bad_header, imagegen::Compression::kGzip);
  const std::string truncated = gzip.substr(0, gzip.size() - 100);
  for (ApplyThreading threading : kEveryThreading) {
    SCOPED_TRACE(static_cast<int>(threading));
    auto inflate_failed = Apply(corrupt, mt::kOciLayerGzip, {.threading = threading});
    ASSERT_FALSE(inflate_failed.has_value());
    EXPECT_EQ(inflate_failed.error().code(), ErrorCode::kInvalidArgument)
        << inflate_failed.error().message();

    auto untar_failed = Apply(bad_tar, mt::kOciLayerGzip, {.threading = threading});
    ASSERT_FALSE(untar_failed.has_value());
    EXPECT_EQ(untar_failed.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(untar_failed.error().message().find("checksum"), std::string::npos)
        << untar_failed.error().message();

    auto ended_early = Apply(truncated, mt::kOciLayerGzip, {.threading = threading});
    ASSERT_FALSE(ended_early.has_value());
    EXPECT_EQ(ended_early.error().code(), ErrorCode::kDataLoss);

    // Sticky: after the untar worker failed, later writes and Finish() repeat its error.
    ApplyOptions options{
        .root = root_, .media_type = std::string(mt::kOciLayerGzip), .threading = threading};
    ASSERT_OK_AND_ASSIGN(auto applier, LayerApplier::Create(options));
    Result<void> written = Ok();
    for (size_t at = 0; at < bad_tar.size() && written; at += 4096) {
      written = applier->Write(std::string_view(bad_tar).substr(at, 4096));
    }
    Result<ApplyResult> finished = applier->Finish();
    ASSERT_FALSE(finished.has_value());
    EXPECT_NE(finished.error().message().find("checksum"), std::string::npos)
        << finished.error().message();
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
}

// Three threads give the same tree and diffID as one, and an applier destroyed mid-stream
// stops its threads.
TEST_F(LayerApplierTest, ThreeThreadsApplyWhatOneDoes) {
  imagegen::FileTree tree = EveryKind();
  tree.AddFile("big", std::string(6 << 20, 'y'));
  const std::string tar = TarOf(tree);
  const std::string zstd = Compress(tar, imagegen::Compression::kZstd);
  auto applied = Apply(zstd, mt::kOciLayerZstd, {.threading = ApplyThreading::kThreeThreads}, 777);
  ASSERT_OK(applied);
  EXPECT_EQ(applied->diff_id, Digest::Sha256Of(tar));
  EXPECT_EQ(applied->uncompressed_bytes, tar.size());
  EXPECT_EQ(applied->compressed_bytes, zstd.size());
  EXPECT_EQ(Lstat(root_ / "big").st.st_size, 6 << 20);
  EXPECT_EQ(Content(root_ / "etc/passwd"), "root:x:0:0\n");

  ApplyOptions options{.root = root_,
                       .media_type = std::string(mt::kOciLayerZstd),
                       .threading = ApplyThreading::kThreeThreads};
  ASSERT_OK_AND_ASSIGN(auto abandoned, LayerApplier::Create(options));
  ASSERT_OK(abandoned->Write(std::string_view(zstd).substr(0, zstd.size() / 2)));
  abandoned.reset();  // joins both threads; nothing hangs
}

TEST_F(LayerApplierTest, ApplyLayerFromFileReadsABlob) {
  std::string tar = TarOf(EveryKind());
  ASSERT_OK_AND_ASSIGN(TempDir blobs, TempDir::Create("archive"));
  ASSERT_TRUE(
      WriteFileAtomically(blobs.Join("layer.gz"), Compress(tar, imagegen::Compression::kGzip))
          .has_value());
  auto result = ApplyLayerFromFile(blobs.Join("layer.gz"),
                                   {.root = root_, .media_type = std::string(mt::kOciLayerGzip)});
  ASSERT_OK(result);
  EXPECT_EQ(result->diff_id, Digest::Sha256Of(tar));
  EXPECT_EQ(Content(root_ / "etc/passwd"), "root:x:0:0\n");
}

// ---------------------------------------------------------------------------------------------
// Hostile archives: each must fail or stay inside the root; nothing next to the root changes.

class HostileTest : public LayerApplierTest, public ::testing::WithParamInterface<WhiteoutMode> {
 protected:
  Result<ApplyResult> ApplyHostile(std::string tar, ApplyOptions options = {}) {
    options.whiteout_mode = GetParam();
    return ApplyTar(tar, std::move(options));
  }
};

TEST_P(HostileTest, DotDotTraversalIsRefused) {
  for (std::string name : {"../sentinel/pwned", "a/../../sentinel/pwned", "./../x", ".."}) {
    RawTar tar;
    tar.Add({.name = name}, "pwned");
    auto result = ApplyHostile(tar.Finish());
    ASSERT_FALSE(result.has_value()) << name;
    EXPECT_EQ(result.error().code(), ErrorCode::kPermissionDenied);
    EXPECT_NE(result.error().ToString().find(name), std::string::npos);
  }
  ExpectOutsideUntouched();
}

TEST_P(HostileTest, AbsolutePathsStayInsideTheRoot) {
  std::string absolute = (sentinel_ / "secret").string();
  RawTar tar;
  tar.Add({.name = absolute}, "pwned");
  auto result = ApplyHostile(tar.Finish());
  ASSERT_OK(result);
  EXPECT_EQ(Content(root_ / absolute.substr(1)), "pwned");
  ExpectOutsideUntouched();
}

TEST_P(HostileTest, NothingIsWrittenThroughSymlinks) {
  std::string up = "../../../../../../../../../../..";
  struct Attack {
    RawHeader link;
    RawHeader entry;
  };
  std::vector<Attack> attacks = {
      {{.name = "abs", .type = '2', .linkname = sentinel_.string()}, {.name = "abs/secret"}},
      {{.name = "rel", .type = '2', .linkname = up + sentinel_.string()}, {.name = "rel/secret"}},
      {{.name = "rel", .type = '2', .linkname = up + sentinel_.string()}, {.name = "rel/sub/file"}},
      {{.name = "rel", .type = '2', .linkname = up + sentinel_.string()},
       {.name = "rel/newdir", .type = '5', .mode = 0777}},
      {{.name = "rel", .type = '2', .linkname = up + sentinel_.string()},
       {.name = "rel/sub", .type = '5', .mode = 0777}},
      {{.name = "dotdot", .type = '2', .linkname = "../sentinel"}, {.name = "dotdot/secret"}},
      {{.name = "dev", .type = '2', .linkname = up + sentinel_.string()},
       {.name = "dev/secret", .type = '6'}},
      {{.name = "sl", .type = '2', .linkname = up + sentinel_.string()},
       {.name = "sl/secret", .type = '2', .linkname = "/etc/shadow"}},
  };
  for (const Attack& attack : attacks) {
    RawTar tar;
    tar.Add(attack.link);
    tar.Add(attack.entry, attack.entry.type == '0' ? "pwned" : "");
    auto result = ApplyHostile(tar.Finish());
    // Either refused, or applied inside the root; never outside.
    ExpectOutsideUntouched();
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  // A file named like a symlink that points out replaces the symlink, not its target.
  RawTar tar;
  tar.Add({.name = "file-link", .type = '2', .linkname = (sentinel_ / "secret").string()});
  tar.Add({.name = "file-link"}, "pwned");
  auto result = ApplyHostile(tar.Finish());
  ASSERT_OK(result);
  EXPECT_TRUE(S_ISREG(Lstat(root_ / "file-link").st.st_mode));
  EXPECT_EQ(Content(root_ / "file-link"), "pwned");
  ExpectOutsideUntouched();
}

TEST_P(HostileTest, SymlinkedParentDirectoryIsResolvedInRoot) {
  RawTar tar;
  tar.Add({.name = "sentinel", .type = '5', .mode = 0755});
  tar.Add({.name = "dir", .type = '5', .mode = 0755});
  tar.Add({.name = "dir/escape", .type = '2', .linkname = "../../sentinel"});
  tar.Add({.name = "dir/escape/secret"}, "pwned");
  tar.Add({.name = "rootlink", .type = '2', .linkname = "/"});
  tar.Add({.name = "rootlink/inside"}, "ok");
  tar.Add({.name = "rootlink/rootlink/dir/escape/again"}, "again");
  auto result = ApplyHostile(tar.Finish());
  ASSERT_OK(result);
  // "../../sentinel" from root/dir clamps at the root: root/sentinel.
  EXPECT_EQ(Content(root_ / "sentinel/secret"), "pwned");
  EXPECT_EQ(Content(root_ / "sentinel/again"), "again");
  EXPECT_EQ(Content(root_ / "inside"), "ok");
  ExpectOutsideUntouched();
}

// A parent that is a symlink leading nowhere inside the root is refused, and the error says
// which symlink and where it points, not "No such file or directory".
TEST_P(HostileTest, SymlinkedParentLeadingNowhereIsRefusedNamingIt) {
  struct RefusedParent {
    RawHeader link;
    std::string entry;
    ErrorCode code;
    std::string message;
  };
  const std::string outside = sentinel_.string();
  const std::vector<RefusedParent> cases = {
      {{.name = "esc", .type = '2', .linkname = outside},
       "esc/file",
       ErrorCode::kPermissionDenied,
       fmt::format("parent \"esc\" is a symlink to {}, outside the layer", outside)},
      {{.name = "esc", .type = '2', .linkname = outside},
       "esc/deeper/file",
       ErrorCode::kPermissionDenied,
       fmt::format("parent \"esc\" is a symlink to {}, outside the layer", outside)},
      {{.name = "dir/up", .type = '2', .linkname = "../../nowhere"},
       "dir/up/file",
       ErrorCode::kPermissionDenied,
       "parent \"dir/up\" is a symlink to ../../nowhere, outside the layer"},
      {{.name = "lib", .type = '2', .linkname = "usr/lib"},
       "lib/libc.so",
       ErrorCode::kInvalidArgument,
       "parent \"lib\" is a symlink to usr/lib, which does not exist in the layer"},
  };
  for (const RefusedParent& c : cases) {
    SCOPED_TRACE(c.entry);
    RawTar tar;
    tar.Add({.name = "dir/", .type = '5', .mode = 0755});
    tar.Add(c.link);
    tar.Add({.name = c.entry}, "pwned");
    auto result = ApplyHostile(tar.Finish());
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code(), c.code) << result.error().ToString();
    EXPECT_THAT(result.error().ToString(), HasSubstr(c.message));
    EXPECT_THAT(result.error().ToString(), Not(HasSubstr("No such file or directory")));
    ExpectOutsideUntouched();
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
}

TEST_P(HostileTest, HardlinksCannotReachOutside) {
  {
    RawTar tar;
    tar.Add({.name = "h", .type = '1', .linkname = "../sentinel/secret"});
    auto result = ApplyHostile(tar.Finish());
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code(), ErrorCode::kPermissionDenied);
  }
  {
    RawTar tar;
    tar.Add({.name = "h2", .type = '1', .linkname = (sentinel_ / "secret").string()});
    EXPECT_FALSE(ApplyHostile(tar.Finish()).has_value());
  }
  {
    RawTar tar;
    tar.Add({.name = "out", .type = '2', .linkname = sentinel_.string()});
    tar.Add({.name = "h3", .type = '1', .linkname = "out/secret"});
    EXPECT_FALSE(ApplyHostile(tar.Finish()).has_value());
  }
  EXPECT_EQ(Lstat(sentinel_ / "secret").st.st_nlink, 1u);
  ExpectOutsideUntouched();
}

TEST_P(HostileTest, FileReplacingAHardlinkDoesNotWriteThroughIt) {
  RawTar tar;
  tar.Add({.name = "etc/", .type = '5', .mode = 0755});
  tar.Add({.name = "etc/passwd"}, "root:x:0:0\n");
  tar.Add({.name = "alias", .type = '1', .linkname = "etc/passwd"});
  tar.Add({.name = "alias"}, "evil:x:0:0\n");
  auto result = ApplyHostile(tar.Finish());
  ASSERT_OK(result);
  EXPECT_EQ(Content(root_ / "etc/passwd"), "root:x:0:0\n");
  EXPECT_EQ(Content(root_ / "alias"), "evil:x:0:0\n");
}

TEST_P(HostileTest, WhiteoutsOfDotDotOrRootAreRefused) {
  for (std::string name : {".wh..", "a/.wh..", ".wh.", "/.wh..", "a/.wh.."}) {
    RawTar tar;
    tar.Add({.name = "a/", .type = '5', .mode = 0755});
    tar.Add({.name = name});
    auto result = ApplyHostile(tar.Finish());
    ASSERT_FALSE(result.has_value()) << name;
    EXPECT_THAT(result, FailsWith(ErrorCode::kPermissionDenied));
  }
  {
    RawTar tar;
    tar.Add({.name = "../.wh.sentinel"});
    EXPECT_FALSE(ApplyHostile(tar.Finish()).has_value());
  }
  {
    // Whiteouts and opaque markers under a symlink pointing out act inside the root only.
    RawTar tar;
    tar.Add({.name = "out", .type = '2', .linkname = sentinel_.string()});
    tar.Add({.name = "out/.wh.secret"});
    tar.Add({.name = "out/.wh..wh..opq"});
    (void)ApplyHostile(tar.Finish());
  }
  EXPECT_TRUE(fs::exists(root_.parent_path() / "sentinel"));
  ExpectOutsideUntouched();
}

TEST_P(HostileTest, GzipBombIsStoppedAtTheLimit) {
  imagegen::FileTree tree;
  tree.AddFile("zeros", std::string(64 << 20, '\0'));
  std::string blob = Compress(TarOf(tree), imagegen::Compression::kGzip);
  ASSERT_LT(blob.size(), 1u << 20);
  ApplyOptions options{.media_type = std::string(mt::kOciLayerGzip)};
  options.whiteout_mode = GetParam();
  options.limits.max_uncompressed_bytes = 8 << 20;
  auto result = Apply(blob, mt::kOciLayerGzip, options);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_LE(Lstat(root_ / "zeros").st.st_size, 8 << 20);
  ExpectOutsideUntouched();
}

TEST_P(HostileTest, HugeSparseDeclarationIsRefusedByLimit) {
  std::string map = "1\n0\n4\n";
  std::string stored = map + std::string(512 - map.size(), '\0') + "DATA";
  RawTar tar;
  tar.AddPax({{"GNU.sparse.major", "1"},
              {"GNU.sparse.minor", "0"},
              {"GNU.sparse.name", "huge"},
              {"GNU.sparse.realsize", "10737418240"}});
  tar.Add({.name = "GNUSparseFile.0/huge", .size = stored.size()}, stored);
  ApplyOptions options;
  options.limits.max_entry_bytes = 1 << 30;
  auto result = ApplyHostile(tar.Finish(), options);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(result.error().message().find("max_entry_bytes"), std::string::npos);
  EXPECT_FALSE(Lstat(root_ / "huge").exists);
  ExpectOutsideUntouched();
}

TEST_P(HostileTest, EntryCountLimit) {
  RawTar tar;
  for (int i = 0; i < 50; ++i) tar.Add({.name = fmt::format("f{}", i)});
  ApplyOptions options;
  options.limits.max_entries = 10;
  auto result = ApplyHostile(tar.Finish(), options);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_FALSE(Lstat(root_ / "f10").exists);
  ExpectOutsideUntouched();
}

TEST_P(HostileTest, OverlongPathIsRefused) {
  RawTar tar;
  tar.AddPax({{"path", std::string(5000, 'a')}});
  tar.Add({.name = "short"});
  auto result = ApplyHostile(tar.Finish());
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Modes, HostileTest,
                         ::testing::Values(WhiteoutMode::kOverlay, WhiteoutMode::kDelete),
                         [](const auto& param_info) {
                           return param_info.param == WhiteoutMode::kOverlay ? "overlay" : "delete";
                         });

}  // namespace
}  // namespace berth::archive

namespace berth::archive {
namespace {

// Records what a visitor injected through ApplyOptions::visitor receives.
class RecordingVisitor final : public TarVisitor {
 public:
  Result<void> OnEntry(const TarEntry& entry) override {
    paths.push_back(entry.path);
    return Ok();
  }
  Result<void> OnData(uint64_t, std::string_view data) override {
    bytes += data.size();
    return Ok();
  }
  Result<void> OnEntryEnd() override { return Ok(); }

  std::vector<std::string> paths;
  uint64_t bytes = 0;
};

TEST_F(LayerApplierTest, InjectedVisitorGetsTheEntriesInsteadOfTheRoot) {
  imagegen::FileTree tree;
  tree.AddDirectory("etc").AddFile("etc/passwd", "root").AddWhiteout("etc/motd");
  const std::string tar = TarOf(tree);
  for (ApplyThreading threading : kEveryThreading) {
    RecordingVisitor visitor;
    auto result = Apply(Compress(tar, imagegen::Compression::kGzip), mt::kOciLayerGzip,
                        {.visitor = &visitor, .threading = threading});
    ASSERT_OK(result);
    EXPECT_EQ(result->diff_id, Digest::Sha256Of(tar));
    EXPECT_EQ(result->file_bytes_written, 0u);
    EXPECT_THAT(visitor.paths, ::testing::ElementsAre("etc/", "etc/passwd", "etc/.wh.motd"));
    EXPECT_EQ(visitor.bytes, 4u);
    EXPECT_TRUE(fs::is_empty(root_));
  }
}

}  // namespace
}  // namespace berth::archive
