// ImageWriter without root: the refusal rules it shares with TarApplier, its error contract, and
// the image's layout read back from the bytes (superblock, root inode, streaming of contents).
// image_writer_mount_test.cc mounts images and checks them with erofs-utils.
#include "berth/erofs/image_writer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <string>

#include "berth/archive/tar_reader.h"
#include "berth/archive/test_util.h"
#include "berth/base/file_util.h"
#include "berth/base/unique_fd.h"
#include "testing/result_matchers.h"
#include "testing/temp_dir.h"
#include "tools/imagegen/file_tree.h"

namespace berth::erofs {
namespace {

namespace fs = std::filesystem;
using archive::TarEntry;
using archive::TarEntryType;
using archive::testing::TarOf;
using ::berth::testing::FailsWith;
using ::berth::testing::TempDir;
using imagegen::FileTree;
using XattrMap = std::map<std::string, std::string>;

uint32_t Le32(const std::string& bytes, size_t at) {
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(bytes[at + i]);
  return value;
}
uint16_t Le16(const std::string& bytes, size_t at) {
  return static_cast<uint16_t>(static_cast<uint8_t>(bytes[at]) |
                               (static_cast<uint8_t>(bytes[at + 1]) << 8));
}

class ImageWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("erofs"));
    image_ = dir_.Join("layer.erofs");
  }

  // Feeds `tar` to a new writer and finishes it; the first error on the way.
  Result<ImageSummary> Write(std::string_view tar) {
    BERTH_ASSIGN_OR_RETURN(auto writer, ImageWriter::Create(image_));
    archive::TarReader reader(*writer);
    BERTH_RETURN_IF_ERROR(reader.Write(tar));
    BERTH_RETURN_IF_ERROR(reader.Finish());
    return writer->Finish();
  }

  Result<ImageSummary> WriteTree(const FileTree& tree) { return Write(TarOf(tree)); }

  TempDir dir_;
  fs::path image_;
};

TEST_F(ImageWriterTest, SuperblockAndRootInodeDescribeTheImage) {
  FileTree tree;
  tree.AddDirectory("etc", {.mtime_seconds = 1700000000})
      .AddFile("etc/hosts", "127.0.0.1 localhost\n", {.mtime_seconds = 1700000000})
      .AddFile("etc/big", std::string(5000, 'b'), {.mtime_seconds = 1700000000});
  ASSERT_OK_AND_ASSIGN(ImageSummary summary, WriteTree(tree));
  ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFile(image_));
  EXPECT_EQ(bytes.size(), summary.image_bytes);
  EXPECT_EQ(summary.blocks * 4096, summary.image_bytes);
  EXPECT_EQ(summary.inodes, 4u);  // /, etc, etc/hosts, etc/big
  EXPECT_EQ(summary.entries, 3u);
  // etc/big's first 4096 bytes; its last 904 and all of etc/hosts follow their inodes.
  EXPECT_EQ(summary.data_blocks, 1u);
  EXPECT_EQ(Le32(bytes, 1024), 0xE0F5E1E2u);              // magic
  EXPECT_EQ(static_cast<uint8_t>(bytes[1024 + 12]), 12);  // 4096-byte blocks
  EXPECT_EQ(Le16(bytes, 1024 + 14), 0u);                  // root nid
  EXPECT_EQ(Le32(bytes, 1024 + 36), summary.blocks);
  EXPECT_EQ(Le32(bytes, 1024 + 80), 0u);  // no incompatible features
  EXPECT_EQ(bytes.substr(4096, 4096), std::string(4096, 'b'));
  EXPECT_NE(bytes.find("127.0.0.1 localhost\n", size_t{Le32(bytes, 1024 + 40)} * 4096),
            std::string::npos);
  // The root inode opens the metadata area: a compact directory, mode 0755, 3 links.
  size_t root = size_t{Le32(bytes, 1024 + 40)} * 4096;
  EXPECT_EQ(Le16(bytes, root) & 1, 0);       // compact
  EXPECT_EQ(Le16(bytes, root + 4), 040755);  // i_mode
  EXPECT_EQ(Le16(bytes, root + 6), 3);       // i_nlink: ".", "..", etc/".."
}

TEST_F(ImageWriterTest, ContentGoesToTheImageWhileItArrives) {
  ASSERT_OK_AND_ASSIGN(auto writer, ImageWriter::Create(image_));
  TarEntry entry{.path = "big", .type = TarEntryType::kRegular, .mode = 0644, .size = 8 << 20};
  ASSERT_OK(writer->OnEntry(entry));
  std::string chunk(64 << 10, 'x');
  for (uint64_t offset = 0; offset < entry.size; offset += chunk.size()) {
    ASSERT_OK(writer->OnData(offset, chunk));
  }
  // At most one write buffer (1 MiB) is held back.
  EXPECT_GE(fs::file_size(image_), uint64_t{7} << 20);
  ASSERT_OK(writer->OnEntryEnd());
  ASSERT_OK_AND_ASSIGN(ImageSummary summary, writer->Finish());
  EXPECT_EQ(summary.data_blocks, 2048u);
}

TEST_F(ImageWriterTest, WithoutAScratchDirectoryEveryFileTakesWholeBlocks) {
  UniqueFd fd(open(image_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  ASSERT_OK_AND_ASSIGN(auto writer, ImageWriter::Create(fd.get()));
  archive::TarReader reader(*writer);
  FileTree tree;
  tree.AddFile("small", "x").AddFile("big", std::string(5000, 'b'));
  ASSERT_OK(reader.Write(TarOf(tree)));
  ASSERT_OK(reader.Finish());
  ASSERT_OK_AND_ASSIGN(ImageSummary summary, writer->Finish());
  EXPECT_EQ(summary.data_blocks, 3u);
}

TEST_F(ImageWriterTest, AMissingScratchDirectoryIsNamed) {
  EXPECT_THAT(ImageWriter::Create(image_, {.scratch_directory = dir_.Join("missing")}),
              FailsWith(ErrorCode::kNotFound, "missing"));
}

TEST_F(ImageWriterTest, TailsThatCannotFollowTheirInodeGoToTheDataArea) {
  FileTree tree;
  tree.AddFile("f", "tail", {.xattrs = {{"user.big", std::string(4050, 'v')}}});
  ASSERT_OK_AND_ASSIGN(ImageSummary summary, WriteTree(tree));
  EXPECT_EQ(summary.data_blocks, 1u);
}

TEST_F(ImageWriterTest, SparseFileOf5GiBCostsItsDataOnly) {
  FileTree tree;
  tree.AddSparseFile("disk.img", uint64_t{5} << 30,
                     {{.offset = 0, .data = "boot"}, {.offset = uint64_t{3} << 30, .data = "x"}});
  ASSERT_OK_AND_ASSIGN(ImageSummary summary, WriteTree(tree));
  // Two 512 KiB chunks of data and a block map of 10240 entries.
  EXPECT_LT(summary.image_bytes, uint64_t{2} << 20);
  ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFile(image_));
  EXPECT_EQ(Le32(bytes, 1024 + 80), 0x4u);  // chunked files
}

TEST_F(ImageWriterTest, RefusesPathsEscapingTheRoot) {
  archive::testing::RawTar tar;
  tar.Add({.name = "../etc/passwd"}, "x");
  EXPECT_THAT(Write(tar.Finish()), FailsWith(ErrorCode::kPermissionDenied, "\"..\""));
}

TEST_F(ImageWriterTest, RefusesSymlinkedParentsThatLeadNowhere) {
  FileTree out;
  out.AddSymlink("escape", "/etc").AddFile("escape/passwd", "x");
  EXPECT_THAT(WriteTree(out), FailsWith(ErrorCode::kPermissionDenied, "outside the layer"));
  FileTree missing;
  missing.AddSymlink("link", "nowhere").AddFile("link/file", "x");
  EXPECT_THAT(WriteTree(missing), FailsWith(ErrorCode::kInvalidArgument, "symlink to nowhere"));
  FileTree file_parent;
  file_parent.AddFile("file", "x").AddFile("file/child", "y");
  EXPECT_THAT(WriteTree(file_parent),
              FailsWith(ErrorCode::kInvalidArgument, "\"file\" is not a directory"));
  FileTree loop;
  loop.AddSymlink("a", "b").AddSymlink("b", "a").AddFile("a/x", "x");
  EXPECT_THAT(WriteTree(loop),
              FailsWith(ErrorCode::kInvalidArgument, "too many levels of symlinks"));
}

TEST_F(ImageWriterTest, SymlinkedParentsResolveInsideTheLayer) {
  FileTree tree;
  tree.AddDirectory("usr/lib")
      .AddSymlink("lib", "/usr/lib")
      .AddSymlink("usr/lib64", "../../../usr/lib")
      .AddFile("lib/a", "a")
      .AddFile("usr/lib64/b", "b");
  EXPECT_OK(WriteTree(tree));
}

TEST_F(ImageWriterTest, RefusesXattrsEroFsCannotStore) {
  for (const char* name : {"system.foo", "lustre.x", "user.", "os2.name"}) {
    FileTree tree;
    tree.AddFile("f", "x", {.xattrs = {{name, "v"}}});
    EXPECT_THAT(WriteTree(tree), FailsWith(ErrorCode::kInvalidArgument, name)) << name;
  }
  FileTree huge;
  huge.AddFile("f", "x", {.xattrs = {{"user.big", std::string(70000, 'v')}}});
  EXPECT_THAT(WriteTree(huge), FailsWith(ErrorCode::kInvalidArgument, "user.big"));
}

TEST_F(ImageWriterTest, RefusesXattrsAndSymlinksTooLargeForAnInode) {
  FileTree many;
  XattrMap xattrs;
  for (int i = 0; i < 5; ++i) xattrs[fmt::format("user.x{}", i)] = std::string(60000, 'v');
  many.AddFile("f", "x", {.xattrs = xattrs});
  EXPECT_THAT(WriteTree(many), FailsWith(ErrorCode::kInvalidArgument, "256 KiB"));
  // A 28-byte xattr body puts the target 28 bytes past a 32-byte slot: 4095 bytes cross a block.
  FileTree symlink;
  symlink.AddSymlink("l", std::string(4095, 't'), {.xattrs = {{"trusted.a", "12345678"}}});
  EXPECT_THAT(WriteTree(symlink), FailsWith(ErrorCode::kInvalidArgument, "symlink target"));
}

TEST_F(ImageWriterTest, RefusesNamesLongerThan255Bytes) {
  FileTree tree;
  tree.AddFile("dir/" + std::string(256, 'n'), "x");
  EXPECT_THAT(WriteTree(tree), FailsWith(ErrorCode::kInvalidArgument, "256 bytes"));
  FileTree parent;
  parent.AddFile(std::string(256, 'p') + "/file", "x");
  EXPECT_THAT(WriteTree(parent), FailsWith(ErrorCode::kInvalidArgument, "256 bytes"));
  // A whiteout stores only the name it hides, which may be 255 bytes long.
  FileTree whiteout;
  whiteout.AddWhiteout(std::string(255, 'w'));
  EXPECT_OK(WriteTree(whiteout));
  FileTree too_long_whiteout;
  too_long_whiteout.AddWhiteout(std::string(256, 'w'));
  EXPECT_THAT(WriteTree(too_long_whiteout), FailsWith(ErrorCode::kInvalidArgument, "256 bytes"));
}

TEST_F(ImageWriterTest, HardlinksNeedAnEarlierEntryThatIsNoDirectory) {
  FileTree missing;
  missing.AddHardlink("link", "nowhere");
  EXPECT_THAT(WriteTree(missing),
              FailsWith(ErrorCode::kFailedPrecondition, "not an earlier entry"));
  FileTree directory;
  directory.AddDirectory("d").AddHardlink("link", "d");
  EXPECT_THAT(WriteTree(directory), FailsWith(ErrorCode::kInvalidArgument, "the directory \"d\""));
  FileTree root;
  root.AddHardlink("link", "./");
  EXPECT_THAT(WriteTree(root), FailsWith(ErrorCode::kInvalidArgument, "root"));
}

TEST_F(ImageWriterTest, RefusesWhiteoutsOfNothing) {
  archive::testing::RawTar tar;
  tar.Add({.name = "dir/.wh.."});
  EXPECT_THAT(Write(tar.Finish()),
              FailsWith(ErrorCode::kPermissionDenied, "not a removable entry"));
}

TEST_F(ImageWriterTest, RefusesANonDirectoryAtTheRoot) {
  archive::testing::RawTar tar;
  tar.Add({.name = "./", .type = '2', .linkname = "x"});
  EXPECT_THAT(Write(tar.Finish()), FailsWith(ErrorCode::kInvalidArgument, "root"));
}

TEST_F(ImageWriterTest, ErrorsAreStickyAndFinishNeedsAClosedEntry) {
  ASSERT_OK_AND_ASSIGN(auto writer, ImageWriter::Create(image_));
  EXPECT_THAT(writer->OnEntry({.path = "a/../../b"}), FailsWith(ErrorCode::kPermissionDenied));
  EXPECT_THAT(writer->OnEntry({.path = "fine"}),
              FailsWith(ErrorCode::kFailedPrecondition, "failed earlier"));

  ASSERT_OK_AND_ASSIGN(auto open, ImageWriter::Create(dir_.Join("open.erofs")));
  ASSERT_OK(open->OnEntry({.path = "file", .size = 1}));
  EXPECT_THAT(open->Finish(), FailsWith(ErrorCode::kFailedPrecondition, "file"));
}

TEST_F(ImageWriterTest, ImplicitDirectoriesAreListedParentsFirstAndOpaqueOnesHideTheirs) {
  FileTree tree;
  tree.AddFile("usr/lib/x/file", "x")
      .AddDirectory("etc")
      .AddFile("etc/conf/a", "a")
      .AddDirectory("var/cache")
      .AddOpaqueWhiteout("var/cache")
      .AddFile("var/cache/sub/file", "f");
  ASSERT_OK_AND_ASSIGN(auto writer, ImageWriter::Create(image_));
  archive::TarReader reader(*writer);
  ASSERT_OK(reader.Write(TarOf(tree)));
  ASSERT_OK(reader.Finish());
  // "var/cache/sub" is below a directory the layer makes opaque: nothing shows through there.
  EXPECT_THAT(writer->ImplicitDirectories(),
              ::testing::ElementsAre("etc/conf", "usr", "usr/lib", "usr/lib/x", "var"));
  EXPECT_THAT(writer->InheritDirectory("etc", {}), FailsWith(ErrorCode::kNotFound));
  EXPECT_THAT(writer->Finish(), FailsWith(ErrorCode::kFailedPrecondition)) << "errors are sticky";
}

TEST_F(ImageWriterTest, AnInheritedDirectoryIsNoLongerImplicit) {
  ASSERT_OK_AND_ASSIGN(auto writer, ImageWriter::Create(image_));
  archive::TarReader reader(*writer);
  ASSERT_OK(reader.Write(TarOf(FileTree().AddFile("etc/conf/a", "a"))));
  ASSERT_OK(reader.Finish());
  ASSERT_OK(writer->InheritDirectory(
      "etc", {.permissions = 0700, .owner = {{1000, 1001}}, .xattrs = {{"user.note", "x"}}}));
  EXPECT_THAT(writer->ImplicitDirectories(), ::testing::ElementsAre("etc/conf"));
  EXPECT_THAT(writer->InheritDirectory("etc/conf", {.xattrs = {{"bogus.name", "x"}}}),
              FailsWith(ErrorCode::kInvalidArgument));
}

TEST_F(ImageWriterTest, RefusesAnFdThatIsNotARegularFile) {
  int fd = open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_THAT(ImageWriter::Create(fd), FailsWith(ErrorCode::kInvalidArgument));
  close(fd);
}

}  // namespace
}  // namespace berth::erofs
