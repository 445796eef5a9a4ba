#include "tools/imagegen/tar_writer.h"

#include <archive_entry.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "berth/archive/tar_reader.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"
#include "tools/imagegen/file_tree.h"
#include "tools/imagegen/tar_reader_for_test.h"

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

// ---------------------------------------------------------------------------------------------
// Sparse files (GNU.sparse 1.0).

// One member as berth's own archive::TarReader delivers it, with the holes filled in as zeros.
struct BerthReadEntry {
  archive::TarEntry entry;
  std::string content;
};

class CollectingVisitor final : public archive::TarVisitor {
 public:
  Result<void> OnEntry(const archive::TarEntry& entry) override {
    read_.push_back({.entry = entry, .content = {}});
    return Ok();
  }
  Result<void> OnData(uint64_t offset, std::string_view data) override {
    std::string& content = read_.back().content;
    if (content.size() < offset + data.size()) content.resize(offset + data.size(), '\0');
    std::memcpy(content.data() + offset, data.data(), data.size());
    return Ok();
  }
  Result<void> OnEntryEnd() override {
    BerthReadEntry& last = read_.back();
    if (last.entry.sparse) last.content.resize(last.entry.size, '\0');
    return Ok();
  }
  std::vector<BerthReadEntry>& read() { return read_; }

 private:
  std::vector<BerthReadEntry> read_;
};

// Reads `bytes` with berth's TarReader, fed in uneven chunks.
std::vector<BerthReadEntry> ReadWithBerth(std::string_view bytes) {
  CollectingVisitor visitor;
  archive::TarReader reader(visitor);
  for (size_t at = 0; at < bytes.size();) {
    size_t chunk = std::min<size_t>(bytes.size() - at, 7777);
    Result<void> written = reader.Write(bytes.substr(at, chunk));
    EXPECT_TRUE(written.has_value()) << written.error().ToString();
    if (!written) return {};
    at += chunk;
  }
  Result<void> finished = reader.Finish();
  EXPECT_TRUE(finished.has_value()) << finished.error().ToString();
  return std::move(visitor.read());
}

constexpr uint64_t kMiB = 1 << 20;

// The logical content of a sparse file: zeros with `segments` written over them.
std::string Materialize(uint64_t logical_size, const std::vector<SparseData>& segments) {
  std::string content(logical_size, '\0');
  for (const SparseData& segment : segments)
    content.replace(segment.offset, segment.data.size(), segment.data);
  return content;
}

struct SparseCase {
  std::string path;
  uint64_t logical_size;
  std::vector<SparseData> segments;
  // Written with FileTree::Add() and the map exactly as given, not AddSparseFile()'s layout.
  bool as_given = false;
};

// Data at the start, a hole in the middle and data at the end; a file that is all hole (no
// segments); the same with GNU tar's trailing empty segment; a hole first, in a directory;
// maps as given: no segment at all, unaligned segments packed together.
std::vector<SparseCase> SparseCases() {
  return {
      {.path = "disk.img",
       .logical_size = 3 * kMiB,
       .segments = {{.offset = 0, .data = std::string(5000, 'h') + "head"},
                    {.offset = 3 * kMiB - 4100, .data = "tail" + std::string(4096, 't')}}},
      {.path = "holes", .logical_size = 8 * kMiB, .segments = {}},
      {.path = "var/lib/gnu-holes",
       .logical_size = 8 * kMiB,
       .segments = {{.offset = 8 * kMiB, .data = ""}}},
      {.path = "var/lib/db",
       .logical_size = 2 * kMiB + 1,
       .segments = {{.offset = kMiB, .data = "middle"}, {.offset = 2 * kMiB, .data = "z"}}},
      {.path = "raw/no-segments", .logical_size = 8 * kMiB, .segments = {}, .as_given = true},
      {.path = "raw/packed",
       .logical_size = 1000,
       .segments = {{.offset = 0, .data = "abc"}, {.offset = 100, .data = "d"}},
       .as_given = true},
  };
}

enum class MapsAsGiven { kInclude, kLeaveOut };

// "before", the sparse cases, "after".
FileTree SparseTree(MapsAsGiven as_given = MapsAsGiven::kInclude) {
  FileTree tree;
  tree.AddFile("before", "before\n", {.mtime_seconds = 1700000000});
  for (SparseCase& sparse : SparseCases()) {
    if (sparse.as_given && as_given == MapsAsGiven::kLeaveOut) continue;
    if (!sparse.as_given) {
      tree.AddSparseFile(sparse.path, sparse.logical_size, std::move(sparse.segments),
                         {.mode = 0600, .uid = 7, .gid = 8, .mtime_seconds = 1700000001});
      continue;
    }
    Entry entry{.path = sparse.path,
                .mode = 0600,
                .uid = 7,
                .gid = 8,
                .mtime_seconds = 1700000001,
                .size = sparse.logical_size,
                .sparse_map = std::vector<SparseSegment>{}};
    std::string content;
    for (const SparseData& segment : sparse.segments) {
      entry.sparse_map->push_back({.offset = segment.offset, .length = segment.data.size()});
      content += segment.data;
    }
    tree.Add(std::move(entry), std::move(content));
  }
  tree.AddFile("after", "after\n", {.mtime_seconds = 1700000002});
  return tree;
}

TEST(TarWriterSparseTest, RoundTripsThroughBerthTarReader) {
  std::vector<BerthReadEntry> read = ReadWithBerth(WriteTree(SparseTree()));
  std::vector<SparseCase> cases = SparseCases();
  ASSERT_EQ(read.size(), cases.size() + 2);
  EXPECT_EQ(read.front().entry.path, "before");
  EXPECT_FALSE(read.front().entry.sparse);
  EXPECT_EQ(read.front().content, "before\n");
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].path);
    const BerthReadEntry& got = read[i + 1];
    EXPECT_EQ(got.entry.path, cases[i].path);
    EXPECT_EQ(got.entry.type, archive::TarEntryType::kRegular);
    EXPECT_TRUE(got.entry.sparse);
    EXPECT_EQ(got.entry.size, cases[i].logical_size);
    EXPECT_EQ(got.entry.mode, 0600u);
    EXPECT_EQ(got.entry.uid, 7u);
    EXPECT_EQ(got.entry.gid, 8u);
    EXPECT_EQ(got.entry.mtime.seconds, 1700000001);
    EXPECT_TRUE(got.content == Materialize(cases[i].logical_size, cases[i].segments))
        << "content differs";
  }
  EXPECT_EQ(read.back().entry.path, "after");
  EXPECT_EQ(read.back().content, "after\n");
}

TEST(TarWriterSparseTest, ReadsBackWithLibarchive) {
  std::vector<ReadEntry> entries = ReadBack(WriteTree(SparseTree()));
  std::vector<SparseCase> cases = SparseCases();
  ASSERT_EQ(entries.size(), cases.size() + 2);
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].path);
    EXPECT_EQ(entries[i + 1].path, cases[i].path);
    EXPECT_EQ(entries[i + 1].size, static_cast<int64_t>(cases[i].logical_size));
    // archive_read_data() fills holes between data but stops at the last data byte, so a
    // trailing hole is added here from the size checked above.
    std::string content = entries[i + 1].content;
    content.resize(cases[i].logical_size, '\0');
    EXPECT_TRUE(content == Materialize(cases[i].logical_size, cases[i].segments))
        << "content differs";
  }
  EXPECT_EQ(entries.back().content, "after\n");
}

TEST(TarWriterSparseTest, HasGnuSparse1Layout) {
  FileTree tree;
  tree.AddSparseFile("var/disk", 10000, {{.offset = 4096, .data = "DATA"}});
  std::string bytes = WriteTree(tree);
  // pax header, its records, the ustar header, one map block, one data block, the trailer.
  ASSERT_EQ(bytes.size(), 512u * 7);
  EXPECT_EQ(bytes[156], 'x');
  std::string records = PaxRecord("GNU.sparse.major", "1") + PaxRecord("GNU.sparse.minor", "0") +
                        PaxRecord("GNU.sparse.name", "var/disk") +
                        PaxRecord("GNU.sparse.realsize", "10000");
  EXPECT_EQ(bytes.substr(512, records.size()), records);
  const std::string header = bytes.substr(1024, 512);
  EXPECT_EQ(header.substr(0, 30), std::string("var/GNUSparseFile.0/disk\0\0\0\0\0\0", 30));
  EXPECT_EQ(header[156], '0');
  // Stored size: the 512-byte map block and 4 bytes of data.
  EXPECT_EQ(header.substr(124, 12), std::string("00000001004\0", 12));
  // The data, then GNU tar's empty segment at the end: the file ends in a hole.
  const std::string map = "2\n4096\n4\n10000\n0\n";
  EXPECT_EQ(bytes.substr(1536, 512), map + std::string(512 - map.size(), '\0'));
  EXPECT_EQ(bytes.substr(2048, 512), "DATA" + std::string(508, '\0'));

  FileTree top;
  top.AddSparseFile("top", 5, {});
  std::string top_bytes = WriteTree(top);
  EXPECT_EQ(top_bytes.substr(1024, 21), std::string("./GNUSparseFile.0/top", 21));
  EXPECT_EQ(top_bytes.substr(1536, 6), "1\n5\n0\n");
}

TEST(TarWriterSparseTest, AddSparseFileLaysSegmentsOutAsGnuTar) {
  FileTree tree;
  tree.AddSparseFile("f", 10000,
                     {{.offset = 0, .data = "abc"},
                      {.offset = 600, .data = "x"},
                      {.offset = 700, .data = ""},
                      {.offset = 5000, .data = "y"}})
      .AddSparseFile("merged", 1000, {{.offset = 0, .data = "abc"}, {.offset = 100, .data = "d"}})
      .AddSparseFile("full", 3, {{.offset = 0, .data = "abc"}});
  using Map = std::vector<SparseSegment>;
  const auto& nodes = tree.nodes();
  ASSERT_EQ(nodes.size(), 3u);
  // Whole blocks but for the last data, the empty segment dropped, GNU tar's end marker added.
  EXPECT_EQ(nodes[0].entry.sparse_map, (Map{{0, 512}, {600, 512}, {5000, 1}, {10000, 0}}));
  EXPECT_EQ(nodes[0].entry.size, 10000u);
  EXPECT_EQ(nodes[0].content, "abc" + std::string(509, '\0') + "x" + std::string(511, '\0') + "y");
  // Segments closer than a block are merged, zeros between them.
  EXPECT_EQ(nodes[1].entry.sparse_map, (Map{{0, 101}, {1000, 0}}));
  EXPECT_EQ(nodes[1].content, "abc" + std::string(97, '\0') + "d");
  // A file that ends in data needs no end marker.
  EXPECT_EQ(nodes[2].entry.sparse_map, (Map{{0, 3}}));
}

TEST(TarWriterSparseTest, SameSegmentsGiveSameBytes) {
  EXPECT_EQ(WriteTree(SparseTree()), WriteTree(SparseTree()));
  FileTree one;
  one.AddSparseFile("f", 100, {{.offset = 10, .data = "x"}});
  FileTree other;
  other.AddSparseFile("f", 100, {{.offset = 11, .data = "x"}});
  EXPECT_NE(WriteTree(one), WriteTree(other));
}

TEST(TarWriterSparseTest, RejectsBadMaps) {
  std::string bytes;
  StringSink sink(&bytes);
  TarWriter tar(sink);
  // The error code of writing `entry`, nullopt if it was written.
  auto code = [&](const Entry& entry, std::string_view content) -> std::optional<ErrorCode> {
    Result<void> written = tar.WriteEntry(entry, content);
    if (written) return std::nullopt;
    return written.error().code();
  };
  using Map = std::vector<SparseSegment>;
  // Overlapping, unsorted, past the end, and offset + length overflowing.
  EXPECT_EQ(
      code({.path = "f", .size = 100, .sparse_map = Map{{0, 10}, {5, 10}}}, std::string(20, 'x')),
      ErrorCode::kInvalidArgument);
  EXPECT_EQ(code({.path = "f", .size = 100, .sparse_map = Map{{50, 1}, {10, 1}}}, "ab"),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code({.path = "f", .size = 100, .sparse_map = Map{{95, 10}}}, std::string(10, 'x')),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code({.path = "f", .size = 100, .sparse_map = Map{{UINT64_MAX - 1, 5}}}, "abcde"),
            ErrorCode::kInvalidArgument);
  // Content that is not the segments' data.
  EXPECT_EQ(code({.path = "f", .size = 100, .sparse_map = Map{{0, 10}}}, "short"),
            ErrorCode::kInvalidArgument);
  // Only regular files can be sparse.
  EXPECT_EQ(code({.path = "d", .type = EntryType::kDirectory, .sparse_map = Map{}}, ""),
            ErrorCode::kInvalidArgument);
  // Nothing was written for the refused entries.
  EXPECT_TRUE(bytes.empty());
  EXPECT_EQ(
      code({.path = "f", .size = 100, .sparse_map = Map{{0, 10}, {10, 0}}}, std::string(10, 'x')),
      std::nullopt);
}

// The first `name` found on PATH.
std::optional<std::filesystem::path> FindOnPath(std::string_view name) {
  const char* path = std::getenv("PATH");
  std::istringstream directories(path != nullptr ? path : "/usr/bin:/bin");
  std::string directory;
  while (std::getline(directories, directory, ':')) {
    if (directory.empty()) continue;
    std::filesystem::path candidate = std::filesystem::path(directory) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(TarWriterSparseTest, TarExtractsTheSameContent) {
  std::optional<std::filesystem::path> tar = FindOnPath("tar");
  if (!tar) GTEST_SKIP() << "no tar on PATH to extract the archive with";
  Result<berth::testing::TempDir> dir = berth::testing::TempDir::Create("sparse-tar");
  ASSERT_TRUE(dir) << dir.error().ToString();
  const std::filesystem::path archive = dir->Join("sparse.tar");
  const std::filesystem::path out = dir->Join("out");
  std::filesystem::create_directories(out);
  std::filesystem::create_directories(dir->Join("scratch"));
  {
    std::ofstream file(archive, std::ios::binary);
    // GNU tar reads the maps as given differently from Go and libarchive (see tar_writer.h),
    // and loses its place in the archive after the packed one.
    file << WriteTree(SparseTree(MapsAsGiven::kLeaveOut));
  }
  Result<berth::testing::CommandResult> extracted = berth::testing::RunCommand(
      {tar->string(), "-xf", archive.string(), "-C", out.string()}, dir->Join("scratch"));
  ASSERT_TRUE(extracted) << extracted.error().ToString();
  ASSERT_EQ(extracted->exit_code, 0) << extracted->out << extracted->err;
  EXPECT_EQ(extracted->err, "");
  for (const SparseCase& sparse : SparseCases()) {
    if (sparse.as_given) continue;
    SCOPED_TRACE(sparse.path);
    const std::filesystem::path file = out / sparse.path;
    struct stat st;
    ASSERT_EQ(::lstat(file.c_str(), &st), 0) << "tar did not create " << file;
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), sparse.logical_size);
    EXPECT_TRUE(ReadFile(file) == Materialize(sparse.logical_size, sparse.segments))
        << "content differs";
  }
  EXPECT_EQ(ReadFile(out / "after"), "after\n");
  // No member was taken for a plain file under its GNUSparseFile.0 name.
  EXPECT_FALSE(std::filesystem::exists(out / "GNUSparseFile.0"));
  EXPECT_FALSE(std::filesystem::exists(out / "var/lib/GNUSparseFile.0"));
}

}  // namespace
}  // namespace berth::imagegen
