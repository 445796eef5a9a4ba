#include "berth/imagegen/tar_writer.h"

#include <archive_entry.h>
#include <gtest/gtest.h>

#include <string>

#include "berth/imagegen/file_tree.h"
#include "berth/imagegen/tar_reader_for_test.h"

namespace berth::imagegen {
namespace {

using testing::ReadEntry;
using testing::ReadTar;

std::string WriteTree(const FileTree& tree) {
  std::string bytes;
  StringSink sink(&bytes);
  TarWriter tar(sink);
  EXPECT_TRUE(tree.WriteTo(tar).has_value());
  EXPECT_TRUE(tar.Finish().has_value());
  return bytes;
}

std::vector<ReadEntry> ReadBack(const std::string& bytes) {
  Result<std::vector<ReadEntry>> entries = ReadTar(bytes);
  EXPECT_TRUE(entries.has_value()) << entries.error().ToString();
  return entries ? *entries : std::vector<ReadEntry>{};
}

TEST(PaxRecordTest, LengthCountsItself) {
  EXPECT_EQ(PaxRecord("mtime", "1350244992.023960108"), "30 mtime=1350244992.023960108\n");
  // 98 bytes without the prefix: "99 " would make 101 bytes, so the prefix becomes "101 ".
  std::string record = PaxRecord("path", std::string(91, 'a'));
  EXPECT_EQ(record.size(), 101u);
  EXPECT_EQ(record.substr(0, 4), "101 ");
}

TEST(TarWriterTest, EveryEntryTypeReadsBackWithLibarchive) {
  FileTree tree;
  tree.AddDirectory("etc", {.mode = 0750, .uid = 1, .gid = 2, .mtime_seconds = 1700000000})
      .AddFile("etc/os-release", "ID=berth\n",
               {.mode = 0640,
                .uid = 1000,
                .gid = 1001,
                .user_name = "alice",
                .group_name = "staff",
                .mtime_seconds = 1234567890})
      .AddFile("bin/su", "setuid", {.mode = 04755})
      .AddSymlink("etc/localtime", "/usr/share/zoneinfo/UTC")
      .AddHardlink("etc/os-release.link", "etc/os-release")
      .AddCharDevice("dev/null", 1, 3, {.mode = 0666})
      .AddBlockDevice("dev/sda", 8, 0, {.mode = 0660})
      .AddFifo("run/fifo", {.mode = 0600})
      .AddFile("usr/bin/ping", "ping",
               {.mode = 0755,
                .xattrs = {{"security.capability", std::string("\x01\x00\x00\x02\x00\x20", 6)},
                           {"user.comment", "hello"}}})
      .AddWhiteout("etc/motd")
      .AddOpaqueWhiteout("var/cache");

  std::vector<ReadEntry> entries = ReadBack(WriteTree(tree));
  ASSERT_EQ(entries.size(), 11u);

  EXPECT_EQ(entries[0].path, "etc/");
  EXPECT_EQ(entries[0].file_type, unsigned{AE_IFDIR});
  EXPECT_EQ(entries[0].mode, 0750u);
  EXPECT_EQ(entries[0].uid, 1);
  EXPECT_EQ(entries[0].gid, 2);
  EXPECT_EQ(entries[0].mtime_seconds, 1700000000);

  EXPECT_EQ(entries[1].path, "etc/os-release");
  EXPECT_EQ(entries[1].file_type, unsigned{AE_IFREG});
  EXPECT_EQ(entries[1].mode, 0640u);
  EXPECT_EQ(entries[1].uid, 1000);
  EXPECT_EQ(entries[1].gid, 1001);
  EXPECT_EQ(entries[1].user_name, "alice");
  EXPECT_EQ(entries[1].group_name, "staff");
  EXPECT_EQ(entries[1].mtime_seconds, 1234567890);
  EXPECT_EQ(entries[1].content, "ID=berth\n");
  EXPECT_EQ(entries[1].size, 9);

  EXPECT_EQ(entries[2].mode, 04755u);
  EXPECT_EQ(entries[2].content, "setuid");

  EXPECT_EQ(entries[3].file_type, unsigned{AE_IFLNK});
  EXPECT_EQ(entries[3].symlink, "/usr/share/zoneinfo/UTC");
  EXPECT_EQ(entries[3].mode, 0777u);

  EXPECT_EQ(entries[4].path, "etc/os-release.link");
  EXPECT_EQ(entries[4].hardlink, "etc/os-release");
  EXPECT_EQ(entries[4].content, "");

  EXPECT_EQ(entries[5].file_type, unsigned{AE_IFCHR});
  EXPECT_EQ(entries[5].device_major, 1u);
  EXPECT_EQ(entries[5].device_minor, 3u);
  EXPECT_EQ(entries[5].mode, 0666u);

  EXPECT_EQ(entries[6].file_type, unsigned{AE_IFBLK});
  EXPECT_EQ(entries[6].device_major, 8u);
  EXPECT_EQ(entries[6].device_minor, 0u);

  EXPECT_EQ(entries[7].file_type, unsigned{AE_IFIFO});
  EXPECT_EQ(entries[7].mode, 0600u);

  EXPECT_EQ(entries[8].content, "ping");
  ASSERT_EQ(entries[8].xattrs.size(), 2u);
  EXPECT_EQ(entries[8].xattrs["security.capability"], std::string("\x01\x00\x00\x02\x00\x20", 6));
  EXPECT_EQ(entries[8].xattrs["user.comment"], "hello");

  EXPECT_EQ(entries[9].path, "etc/.wh.motd");
  EXPECT_EQ(entries[9].file_type, unsigned{AE_IFREG});
  EXPECT_EQ(entries[9].size, 0);
  EXPECT_EQ(entries[10].path, "var/cache/.wh..wh..opq");
}

TEST(TarWriterTest, LongNamesLinksAndOwnersUsePax) {
  std::string long_dir(120, 'd');
  std::string long_path = long_dir + "/" + std::string(150, 'f');
  std::string long_target = "/" + std::string(200, 't');
  std::string long_user(40, 'u');
  FileTree tree;
  tree.AddDirectory(long_dir)
      .AddFile(long_path, "content", {.uid = 3'000'000, .gid = 4'000'000, .user_name = long_user})
      .AddSymlink(long_dir + "/link", long_target)
      .AddHardlink(long_dir + "/hard", long_path);

  std::vector<ReadEntry> entries = ReadBack(WriteTree(tree));
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0].path, long_dir + "/");
  EXPECT_EQ(entries[1].path, long_path);
  EXPECT_EQ(entries[1].content, "content");
  EXPECT_EQ(entries[1].uid, 3'000'000);
  EXPECT_EQ(entries[1].gid, 4'000'000);
  EXPECT_EQ(entries[1].user_name, long_user);
  EXPECT_EQ(entries[2].symlink, long_target);
  EXPECT_EQ(entries[3].hardlink, long_path);
}

TEST(TarWriterTest, SubsecondAndNegativeMtimesUsePax) {
  FileTree tree;
  tree.AddFile("a", "", {.mtime_seconds = 1700000000, .mtime_nanoseconds = 123456789})
      .AddFile("b", "", {.mtime_seconds = -2})
      .AddFile("c", "", {.mtime_seconds = 1700000000})
      .AddFile("d", "", {.mtime_seconds = -2, .mtime_nanoseconds = 500000000});
  std::string bytes = WriteTree(tree);
  EXPECT_NE(bytes.find("mtime=1700000000.123456789\n"), std::string::npos);
  EXPECT_NE(bytes.find("mtime=-2\n"), std::string::npos);
  // -2 s + 0.5 s is the decimal -1.5 (as Go's archive/tar writes it). Readers disagree on
  // negative fractions, so only the bytes are checked for this one.
  EXPECT_NE(bytes.find("mtime=-1.5\n"), std::string::npos);

  std::vector<ReadEntry> entries = ReadBack(bytes);
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0].mtime_seconds, 1700000000);
  EXPECT_EQ(entries[0].mtime_nanoseconds, 123456789);
  EXPECT_EQ(entries[1].mtime_seconds, -2);
  EXPECT_EQ(entries[2].mtime_seconds, 1700000000);
  EXPECT_EQ(entries[2].mtime_nanoseconds, 0);
}

TEST(TarWriterTest, PlainEntryHasExactUstarLayout) {
  FileTree tree;
  tree.AddFile("hello.txt", "hi\n", {.mtime_seconds = 0});
  std::string bytes = WriteTree(tree);
  // One header, one padded content block and the two-block trailer; no pax header.
  ASSERT_EQ(bytes.size(), 512u * 4);
  EXPECT_EQ(bytes.substr(0, 9), "hello.txt");
  EXPECT_EQ(bytes.substr(100, 8), std::string("0000644\0", 8));
  EXPECT_EQ(bytes.substr(124, 12), std::string("00000000003\0", 12));
  EXPECT_EQ(bytes[156], '0');
  EXPECT_EQ(bytes.substr(257, 8), std::string("ustar\0"
                                              "00",
                                              8));
  EXPECT_EQ(bytes.substr(512, 3), "hi\n");
  EXPECT_EQ(bytes.substr(1024), std::string(1024, '\0'));
}

TEST(TarWriterTest, SameTreeGivesSameBytes) {
  auto make = [](int64_t mtime) {
    FileTree tree;
    tree.AddDirectory("d").AddFile(
        "d/f", "x", {.mtime_seconds = mtime, .xattrs = {{"user.b", "2"}, {"user.a", "1"}}});
    return tree;
  };
  EXPECT_EQ(WriteTree(make(5)), WriteTree(make(5)));
  EXPECT_NE(WriteTree(make(5)), WriteTree(make(6)));
}

TEST(TarWriterTest, HugeSizeGoesToPaxHeader) {
  std::string bytes;
  StringSink sink(&bytes);
  TarWriter tar(sink);
  uint64_t nine_gib = uint64_t{9} << 30;
  ASSERT_TRUE(tar.WriteHeader({.path = "big", .size = nine_gib}).has_value());
  EXPECT_NE(bytes.find("size=9663676416\n"), std::string::npos);
  // The content is missing, so the archive cannot be finished.
  Result<void> finished = tar.Finish();
  ASSERT_FALSE(finished.has_value());
  EXPECT_EQ(finished.error().code(), ErrorCode::kFailedPrecondition);
}

TEST(TarWriterTest, RejectsContentBeyondDeclaredSize) {
  std::string bytes;
  StringSink sink(&bytes);
  TarWriter tar(sink);
  ASSERT_TRUE(tar.WriteHeader({.path = "f", .size = 2}).has_value());
  Result<void> written = tar.WriteData("abc");
  ASSERT_FALSE(written.has_value());
  EXPECT_EQ(written.error().code(), ErrorCode::kInvalidArgument);
}

TEST(TarWriterTest, RejectsBadEntries) {
  std::string bytes;
  StringSink sink(&bytes);
  TarWriter tar(sink);
  EXPECT_EQ(tar.WriteHeader({.path = ""}).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(tar.WriteHeader({.path = "d", .type = EntryType::kDirectory, .size = 1}).error().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(tar.WriteHeader({.path = "t", .mtime_nanoseconds = 1'000'000'000}).error().code(),
            ErrorCode::kInvalidArgument);
}

TEST(TarWriterTest, WritesHostilePathsVerbatimForUnpackerTests) {
  FileTree tree;
  tree.AddFile("../escape", "x").AddSymlink("link", "../../etc/passwd");
  std::string bytes = WriteTree(tree);
  EXPECT_EQ(bytes.substr(0, 10), std::string("../escape\0", 10));
}

}  // namespace
}  // namespace berth::imagegen
