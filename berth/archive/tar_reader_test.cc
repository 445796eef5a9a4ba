#include "berth/archive/tar_reader.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "berth/archive/test_util.h"
#include "testing/result_matchers.h"

namespace berth::archive {
namespace {

using ::berth::testing::FailsWith;

using testing::RawHeader;
using testing::RawTar;
using testing::TarOf;

struct Seen {
  TarEntry entry;
  std::string content;  // Logical content (holes as zeros) for regular files.
};

class Recorder final : public TarVisitor {
 public:
  Result<void> OnEntry(const TarEntry& entry) override {
    EXPECT_FALSE(open_);
    open_ = true;
    seen.push_back({entry, {}});
    return Ok();
  }
  Result<void> OnData(uint64_t offset, std::string_view data) override {
    std::string& content = seen.back().content;
    if (content.size() < offset + data.size()) content.resize(offset + data.size(), '\0');
    content.replace(offset, data.size(), data);
    return Ok();
  }
  Result<void> OnEntryEnd() override {
    EXPECT_TRUE(open_);
    open_ = false;
    Seen& last = seen.back();
    if (last.entry.sparse && last.entry.size < (1 << 20)) {
      last.content.resize(last.entry.size, '\0');
    }
    return Ok();
  }
  std::vector<Seen> seen;

 private:
  bool open_ = false;
};

Result<std::vector<Seen>> Parse(std::string_view tar, size_t step = 1 << 20,
                                TarLimits limits = {}) {
  Recorder recorder;
  TarReader reader(recorder, limits);
  for (size_t at = 0; at < tar.size(); at += step) {
    BERTH_RETURN_IF_ERROR(reader.Write(tar.substr(at, step)));
  }
  BERTH_RETURN_IF_ERROR(reader.Finish());
  EXPECT_EQ(reader.entries(), recorder.seen.size());
  return recorder.seen;
}

imagegen::FileTree RichTree() {
  imagegen::FileTree tree;
  std::string long_dir(120, 'd');
  tree.AddDirectory("etc", {.mode = 01755, .mtime_seconds = 1700000000, .mtime_nanoseconds = 5})
      .AddFile("etc/passwd", "root:x:0:0\n", {.mode = 0644, .uid = 1000, .gid = 2000})
      .AddFile(
          "bin/ping", std::string(70'000, 'p'),
          {.mode = 04755, .xattrs = {{"security.capability", std::string("\x01\x02\0\x03", 4)}}})
      .AddSymlink("bin/sh", "/bin/busybox")
      .AddHardlink("bin/ping2", "bin/ping")
      .AddCharDevice("dev/null", 1, 3)
      .AddBlockDevice("dev/sda", 8, 0)
      .AddFifo("run/fifo")
      .AddFile(long_dir + "/" + std::string(150, 'f'), "long",
               {.mtime_seconds = 12, .mtime_nanoseconds = 123456789})
      .AddSymlink("link-long", std::string(200, 't'));
  return tree;
}

TEST(TarReaderTest, ParsesEveryEntryTypeAndPaxField) {
  std::string tar = TarOf(RichTree());
  for (size_t step : {size_t{1} << 20, size_t{511}, size_t{1}}) {
    auto seen = Parse(tar, step);
    ASSERT_OK(seen);
    ASSERT_EQ(seen->size(), 10u);
    const auto& s = *seen;
    EXPECT_EQ(s[0].entry.type, TarEntryType::kDirectory);
    EXPECT_EQ(s[0].entry.mode, 01755u);
    EXPECT_EQ(s[0].entry.mtime, (TarTime{1700000000, 5}));
    EXPECT_EQ(s[1].entry.path, "etc/passwd");
    EXPECT_EQ(s[1].content, "root:x:0:0\n");
    EXPECT_EQ(s[1].entry.uid, 1000u);
    EXPECT_EQ(s[1].entry.gid, 2000u);
    EXPECT_EQ(s[2].entry.mode, 04755u);
    EXPECT_EQ(s[2].content, std::string(70'000, 'p'));
    ASSERT_EQ(s[2].entry.xattrs.size(), 1u);
    EXPECT_EQ(s[2].entry.xattrs[0].first, "security.capability");
    EXPECT_EQ(s[2].entry.xattrs[0].second, std::string("\x01\x02\0\x03", 4));
    EXPECT_EQ(s[3].entry.type, TarEntryType::kSymlink);
    EXPECT_EQ(s[3].entry.link_target, "/bin/busybox");
    EXPECT_EQ(s[4].entry.type, TarEntryType::kHardlink);
    EXPECT_EQ(s[4].entry.link_target, "bin/ping");
    EXPECT_EQ(s[5].entry.type, TarEntryType::kCharDevice);
    EXPECT_EQ(s[5].entry.device_major, 1u);
    EXPECT_EQ(s[5].entry.device_minor, 3u);
    EXPECT_EQ(s[6].entry.type, TarEntryType::kBlockDevice);
    EXPECT_EQ(s[6].entry.device_major, 8u);
    EXPECT_EQ(s[7].entry.type, TarEntryType::kFifo);
    EXPECT_EQ(s[8].entry.path, std::string(120, 'd') + "/" + std::string(150, 'f'));
    EXPECT_EQ(s[8].entry.mtime, (TarTime{12, 123456789}));
    EXPECT_EQ(s[9].entry.link_target, std::string(200, 't'));
  }
}

TEST(TarReaderTest, GnuLongNamesAndLinks) {
  std::string name(300, 'n');
  std::string link(250, 'l');
  RawTar tar;
  tar.Add({.name = "././@LongLink", .type = 'L', .gnu = true}, name + '\0');
  tar.Add({.name = "././@LongLink", .type = 'K', .gnu = true}, link + '\0');
  tar.Add({.name = "short", .type = '2', .linkname = "short-target", .gnu = true});
  auto seen = Parse(tar.Finish());
  ASSERT_OK(seen);
  ASSERT_EQ(seen->size(), 1u);
  EXPECT_EQ((*seen)[0].entry.path, name);
  EXPECT_EQ((*seen)[0].entry.link_target, link);
}

TEST(TarReaderTest, PaxOverridesSizeTimesAndIdsAndNegativeFractions) {
  RawTar tar;
  tar.AddPax({{"path", "from/pax"},
              {"mtime", "-1.25"},
              {"atime", "1700000000.1"},
              {"uid", "4000000000"},
              {"gid", "7"},
              {"uname", "ignored"},
              {"SCHILY.xattr.user.k", "v"}});
  tar.Add({.name = "from-ustar", .size = 3}, "abc");
  tar.Add({.name = "next", .size = 1}, "z");  // Overrides must not leak to the next entry.
  auto seen = Parse(tar.Finish());
  ASSERT_OK(seen);
  ASSERT_EQ(seen->size(), 2u);
  const TarEntry& e = (*seen)[0].entry;
  EXPECT_EQ(e.path, "from/pax");
  EXPECT_EQ(e.mtime, (TarTime{-2, 750000000}));
  EXPECT_TRUE(e.has_atime);
  EXPECT_EQ(e.atime, (TarTime{1700000000, 100000000}));
  EXPECT_EQ(e.uid, 4000000000u);
  EXPECT_EQ(e.gid, 7u);
  ASSERT_EQ(e.xattrs.size(), 1u);
  EXPECT_EQ((*seen)[0].content, "abc");
  EXPECT_EQ((*seen)[1].entry.path, "next");
  EXPECT_FALSE((*seen)[1].entry.has_atime);
  EXPECT_TRUE((*seen)[1].entry.xattrs.empty());
}

TEST(TarReaderTest, GlobalPaxHeadersAreIgnored) {
  RawTar tar;
  tar.Add({.name = "global", .type = 'g'}, imagegen::PaxRecord("path", "evil"));
  tar.Add({.name = "a", .size = 1}, "1");
  auto seen = Parse(tar.Finish());
  ASSERT_OK(seen);
  ASSERT_EQ(seen->size(), 1u);
  EXPECT_EQ((*seen)[0].entry.path, "a");
}

TEST(TarReaderTest, HeaderOnlyTypesCarryNoData) {
  // A symlink whose header claims 1000 bytes: the next header follows immediately (as Go's
  // archive/tar reads it).
  RawTar tar;
  tar.Add({.name = "link", .type = '2', .size = 1000, .linkname = "t"});
  tar.Add({.name = "file", .size = 2}, "ok");
  auto seen = Parse(tar.Finish());
  ASSERT_OK(seen);
  ASSERT_EQ(seen->size(), 2u);
  EXPECT_EQ((*seen)[1].content, "ok");
}

TEST(TarReaderTest, SparsePax10) {
  // Logical file: 1 MiB hole, "DATA", hole to 10 GiB.
  std::string map = "2\n1048576\n4\n10737418236\n0\n";
  std::string stored = map + std::string(512 - map.size(), '\0') + "DATA";
  RawTar tar;
  tar.AddPax({{"GNU.sparse.major", "1"},
              {"GNU.sparse.minor", "0"},
              {"GNU.sparse.name", "sparse.img"},
              {"GNU.sparse.realsize", "10737418240"}});
  tar.Add({.name = "GNUSparseFile.0/sparse.img", .size = stored.size()}, stored);
  Recorder recorder;
  TarReader reader(recorder);
  ASSERT_TRUE(reader.Write(tar.Finish()).has_value());
  ASSERT_TRUE(reader.Finish().has_value());
  ASSERT_EQ(recorder.seen.size(), 1u);
  const TarEntry& e = recorder.seen[0].entry;
  EXPECT_EQ(e.path, "sparse.img");
  EXPECT_TRUE(e.sparse);
  EXPECT_EQ(e.size, 10737418240u);
}

TEST(TarReaderTest, SparsePax01AndOldGnu) {
  RawTar tar;
  tar.AddPax(
      {{"GNU.sparse.size", "20"}, {"GNU.sparse.map", "2,3,10,2"}, {"GNU.sparse.name", "s01"}});
  tar.Add({.name = "GNUSparseFile.1/s01", .size = 5}, "abcde");
  // Old GNU 'S': segments in the header at offset 386, realsize at 483.
  RawTar::Block block = RawTar::MakeHeader({.name = "oldgnu", .type = 'S', .size = 3, .gnu = true});
  RawTar::PutOctal(block, 386, 12, 4);
  RawTar::PutOctal(block, 398, 12, 3);
  RawTar::PutOctal(block, 483, 12, 16);
  RawTar::Checksum(block);
  tar.AddBlock(block).AppendPadded("xyz");
  auto seen = Parse(tar.Finish(), 100);
  ASSERT_OK(seen);
  ASSERT_EQ(seen->size(), 2u);
  EXPECT_EQ((*seen)[0].entry.path, "s01");
  EXPECT_EQ((*seen)[0].content, std::string("\0\0abc\0\0\0\0\0de\0\0\0\0\0\0\0\0", 20));
  EXPECT_EQ((*seen)[1].entry.path, "oldgnu");
  EXPECT_EQ((*seen)[1].content, std::string("\0\0\0\0xyz\0\0\0\0\0\0\0\0\0", 16));
}

TEST(TarReaderTest, SparseMapMustMatchStoredData) {
  RawTar tar;
  tar.AddPax(
      {{"GNU.sparse.size", "20"}, {"GNU.sparse.map", "2,3,1,2"}, {"GNU.sparse.name", "bad"}});
  tar.Add({.name = "bad", .size = 5}, "abcde");
  auto seen = Parse(tar.Finish());
  ASSERT_FALSE(seen.has_value());
  EXPECT_EQ(seen.error().code(), ErrorCode::kInvalidArgument);
}

TEST(TarReaderTest, CorruptChecksumIsRefused) {
  std::string tar = TarOf(RichTree());
  tar[10] ^= 0x01;  // Inside the first header's name.
  auto seen = Parse(tar);
  ASSERT_FALSE(seen.has_value());
  EXPECT_EQ(seen.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(seen.error().message().find("checksum"), std::string::npos);
}

TEST(TarReaderTest, AbsurdNumericFieldsAreRefused) {
  for (std::string raw : {std::string("12345678z01"),
                          std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe", 12)}) {
    RawTar tar;
    tar.Add({.name = "f", .raw_size = raw});
    auto seen = Parse(tar.Finish());
    ASSERT_FALSE(seen.has_value());
    EXPECT_THAT(seen, FailsWith(ErrorCode::kInvalidArgument));
  }
  RawTar big;
  big.Add({.name = "f", .size = uint64_t{1} << 33});
  auto seen = Parse(big.bytes(), 1 << 20, {.max_entry_bytes = 1 << 30});
  ASSERT_FALSE(seen.has_value());
  EXPECT_EQ(seen.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(seen.error().message().find("max_entry_bytes"), std::string::npos);
}

TEST(TarReaderTest, TruncatedArchiveIsDataLoss) {
  std::string tar = TarOf(RichTree());
  // Inside content, inside a header, and at a header boundary without the end marker.
  for (size_t keep : {size_t{1024 + 100}, size_t{1024 + 512 + 20}, tar.size() - 1024}) {
    auto seen = Parse(std::string_view(tar).substr(0, keep));
    ASSERT_FALSE(seen.has_value()) << keep;
    EXPECT_THAT(seen, FailsWith(ErrorCode::kDataLoss));
    EXPECT_NE(seen.error().message().find("truncated"), std::string::npos);
  }
  // A lone zero block at the end is accepted, as GNU tar does.
  auto lone = Parse(std::string_view(tar).substr(0, tar.size() - 512));
  EXPECT_TRUE(lone.has_value());
}

TEST(TarReaderTest, EntryLimitIsResourceExhausted) {
  RawTar tar;
  for (int i = 0; i < 5; ++i) tar.Add({.name = fmt::format("f{}", i)});
  auto seen = Parse(tar.Finish(), 1 << 20, {.max_entries = 4});
  ASSERT_FALSE(seen.has_value());
  EXPECT_EQ(seen.error().code(), ErrorCode::kResourceExhausted);
}

TEST(TarReaderTest, UnknownTypeIsUnimplemented) {
  RawTar tar;
  tar.Add({.name = "weird", .type = 'Q'});
  auto seen = Parse(tar.Finish());
  ASSERT_FALSE(seen.has_value());
  EXPECT_EQ(seen.error().code(), ErrorCode::kUnimplemented);
}

TEST(TarReaderTest, TrailingBytesAfterEndMarkerAreIgnored) {
  RawTar tar;
  tar.Add({.name = "a", .size = 1}, "1");
  std::string bytes = tar.Finish() + std::string(9216, '\0');
  auto seen = Parse(bytes, 700);
  ASSERT_OK(seen);
  EXPECT_EQ(seen->size(), 1u);
}

}  // namespace
}  // namespace berth::archive
