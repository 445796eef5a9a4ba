#include "tools/imagegen/file_tree.h"

#include <archive_entry.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "berth/base/file_util.h"
#include "testing/result_matchers.h"
#include "testing/temp_dir.h"
#include "tools/imagegen/layer.h"
#include "tools/imagegen/tar_reader_for_test.h"

namespace berth::imagegen {
namespace {

namespace fs = std::filesystem;
using ::berth::testing::TempDir;

void WriteText(const fs::path& path, std::string_view text, fs::perms perms = fs::perms(0644)) {
  ASSERT_TRUE(WriteFileAtomically(path, text).has_value());
  fs::permissions(path, perms);
}

std::vector<testing::ReadEntry> TarOf(const LayerSource& source) {
  Result<Layer> layer = BuildLayer(source, {.compression = Compression::kNone});
  EXPECT_TRUE(layer.has_value()) << layer.error().ToString();
  if (!layer) return {};
  Result<std::vector<testing::ReadEntry>> entries = testing::ReadTar(layer->bytes);
  EXPECT_TRUE(entries.has_value()) << entries.error().ToString();
  return entries ? *entries : std::vector<testing::ReadEntry>{};
}

TEST(FileTreeTest, AddHelpersApplyTypeDefaults) {
  FileTree tree;
  tree.AddFile("f", "abc")
      .AddDirectory("d")
      .AddSymlink("l", "f")
      .AddWhiteout("d/gone/")
      .AddOpaqueWhiteout("d/")
      .AddWhiteout("top");
  const auto& nodes = tree.nodes();
  ASSERT_EQ(nodes.size(), 6u);
  EXPECT_EQ(nodes[0].entry.mode, 0644u);
  EXPECT_EQ(nodes[0].entry.size, 3u);
  EXPECT_EQ(nodes[1].entry.mode, 0755u);
  EXPECT_EQ(nodes[2].entry.mode, 0777u);
  EXPECT_EQ(nodes[3].entry.path, "d/.wh.gone");
  EXPECT_EQ(nodes[4].entry.path, "d/.wh..wh..opq");
  EXPECT_EQ(nodes[5].entry.path, ".wh.top");
}

TEST(DirectoryTreeTest, WalksDepthFirstInByteOrderWithEveryType) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("imagegen"));
  const fs::path& root = dir.path();
  fs::create_directories(root / "b/sub");
  fs::create_directories(root / "a");
  WriteText(root / "b/sub/z.txt", "zzz");
  WriteText(root / "b/run.sh", "#!/bin/sh\n", fs::perms(0755));
  WriteText(root / "a/data", "data");
  fs::create_hard_link(root / "a/data", root / "b/data-link");
  fs::create_symlink("../a/data", root / "b/symlink");
  ASSERT_EQ(::mkfifo((root / "a/fifo").c_str(), 0600), 0);
  // A socket has no tar form and must be left out.
  int socket_fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string socket_path = (root / "a/sock").string();
  ASSERT_LT(socket_path.size(), sizeof(address.sun_path));
  std::strcpy(address.sun_path, socket_path.c_str());
  ASSERT_EQ(::bind(socket_fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ::close(socket_fd);
  bool have_xattrs = ::setxattr((root / "a/data").c_str(), "user.origin", "test", 4, 0) == 0;

  DirectoryTree tree(root, {.path_prefix = "opt", .uid = 0, .gid = 0, .mtime_seconds = 42});
  std::vector<testing::ReadEntry> entries = TarOf(tree);
  std::vector<std::string> paths;
  for (const auto& entry : entries) paths.push_back(entry.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"opt/a/", "opt/a/data", "opt/a/fifo", "opt/b/",
                                             "opt/b/data-link", "opt/b/run.sh", "opt/b/sub/",
                                             "opt/b/sub/z.txt", "opt/b/symlink"}));
  ASSERT_EQ(entries.size(), 9u);
  EXPECT_EQ(entries[1].content, "data");
  EXPECT_EQ(entries[1].mtime_seconds, 42);
  EXPECT_EQ(entries[1].uid, 0);
  if (have_xattrs) {
    EXPECT_EQ(entries[1].xattrs["user.origin"], "test");
  }
  EXPECT_EQ(entries[2].file_type, unsigned{AE_IFIFO});
  EXPECT_EQ(entries[4].hardlink, "opt/a/data");
  EXPECT_EQ(entries[5].mode, 0755u);
  EXPECT_EQ(entries[5].content, "#!/bin/sh\n");
  EXPECT_EQ(entries[7].content, "zzz");
  EXPECT_EQ(entries[8].file_type, unsigned{AE_IFLNK});
  EXPECT_EQ(entries[8].symlink, "../a/data");
}

TEST(DirectoryTreeTest, KeepsOwnershipAndMtimeWithoutOverrides) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("imagegen"));
  WriteText(dir.path() / "f", "x");
  struct stat info;
  ASSERT_EQ(::lstat((dir.path() / "f").c_str(), &info), 0);
  std::vector<testing::ReadEntry> entries = TarOf(DirectoryTree(dir.path()));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].path, "f");
  EXPECT_EQ(entries[0].uid, static_cast<int64_t>(info.st_uid));
  EXPECT_EQ(entries[0].mtime_seconds, info.st_mtim.tv_sec);
  EXPECT_EQ(entries[0].mtime_nanoseconds, info.st_mtim.tv_nsec);
}

TEST(DirectoryTreeTest, SameDirectoryGivesSameDigests) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("imagegen"));
  fs::create_directories(dir.path() / "x/y");
  WriteText(dir.path() / "x/y/file", "content");
  DirectoryTree tree(dir.path(), {.uid = 0, .gid = 0, .mtime_seconds = 0});
  Result<Layer> first = BuildLayer(tree);
  Result<Layer> second = BuildLayer(tree);
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_EQ(first->blob.digest, second->blob.digest);
  EXPECT_EQ(first->diff_id, second->diff_id);
}

TEST(DirectoryTreeTest, MissingRootIsNotFound) {
  Result<Layer> layer = BuildLayer(DirectoryTree("/nonexistent/berth/imagegen"));
  ASSERT_FALSE(layer.has_value());
  EXPECT_EQ(layer.error().code(), ErrorCode::kNotFound);
}

TEST(DirectoryTreeTest, UnreadableFilesFailOrAreSkipped) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever their mode";
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("imagegen"));
  WriteText(dir.path() / "secret", "s", fs::perms::none);
  WriteText(dir.path() / "public", "p");
  Result<Layer> strict = BuildLayer(DirectoryTree(dir.path()));
  ASSERT_FALSE(strict.has_value());
  EXPECT_EQ(strict.error().code(), ErrorCode::kPermissionDenied);
  std::vector<testing::ReadEntry> entries =
      TarOf(DirectoryTree(dir.path(), {.unreadable = UnreadablePolicy::kSkip}));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].path, "public");
}

// Fills `path` with `size` pseudo-random bytes, 1 MiB at a time, and returns their sha256.
Digest WriteRandomFile(const fs::path& path, size_t size, uint64_t seed) {
  std::ofstream out(path, std::ios::binary);
  Hasher hasher;
  std::string chunk(1 << 20, '\0');
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t written = 0; written < size;) {
    size_t n = std::min(chunk.size(), size - written);
    for (size_t i = 0; i < n; i += 8) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      std::memcpy(chunk.data() + i, &state, std::min<size_t>(8, n - i));
    }
    out.write(chunk.data(), static_cast<std::streamsize>(n));
    hasher.Update(std::string_view(chunk.data(), n));
    written += n;
  }
  return hasher.Finish();
}

long PeakRssKilobytes() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

TEST(DirectoryTreeTest, StreamsALargeTreeToAFile) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("imagegen"));
  fs::path source = dir.path() / "src";
  fs::create_directories(source / "big");
  std::map<std::string, Digest> expected;
  constexpr size_t kFiles = 5;
  constexpr size_t kFileSize = 10 << 20;  // 50 MiB in all.
  for (size_t i = 0; i < kFiles; ++i) {
    std::string name = "big/file" + std::to_string(i);
    expected.emplace(name, WriteRandomFile(source / name, kFileSize + i, i));
  }

  long peak_before = PeakRssKilobytes();
  DirectoryTree tree(source, {.uid = 0, .gid = 0, .mtime_seconds = 0});
  fs::path blob = dir.path() / "layer.tar.zst";
  Result<Layer> layer = BuildLayerFile(tree, blob, {.compression = Compression::kZstd, .level = 1});
  ASSERT_TRUE(layer.has_value()) << layer.error().ToString();
  long growth_kb = PeakRssKilobytes() - peak_before;
  // Streaming keeps one read buffer and compressor state, never a whole file or layer.
  EXPECT_LT(growth_kb, 32 * 1024) << "building a 50 MiB layer grew peak RSS by " << growth_kb
                                  << " KiB";
  EXPECT_TRUE(layer->bytes.empty());
  EXPECT_EQ(static_cast<uint64_t>(layer->blob.size), fs::file_size(blob));
  EXPECT_GT(layer->uncompressed_size, kFiles * kFileSize);

  // The diffID equals the digest of the same walk written uncompressed.
  NullSink discard;
  Result<LayerDigests> plain = WriteLayer(tree, {.compression = Compression::kNone}, discard);
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->diff_id, layer->diff_id);
  EXPECT_EQ(plain->blob_digest, layer->diff_id);

  // Read the blob back with libarchive, streaming, and check every file's content digest.
  testing::UniqueArchiveReader reader(archive_read_new());
  archive_read_support_format_tar(reader.get());
  archive_read_support_filter_zstd(reader.get());
  ASSERT_EQ(archive_read_open_filename(reader.get(), blob.c_str(), 1 << 16), ARCHIVE_OK);
  std::map<std::string, Digest> seen;
  archive_entry* entry = nullptr;
  std::string buffer(1 << 16, '\0');
  while (archive_read_next_header(reader.get(), &entry) == ARCHIVE_OK) {
    if (archive_entry_filetype(entry) != AE_IFREG) continue;
    Hasher hasher;
    la_ssize_t got;
    while ((got = archive_read_data(reader.get(), buffer.data(), buffer.size())) > 0) {
      hasher.Update(std::string_view(buffer.data(), static_cast<size_t>(got)));
    }
    ASSERT_EQ(got, 0);
    seen.emplace(archive_entry_pathname(entry), hasher.Finish());
  }
  EXPECT_EQ(seen, expected);

  // And the blob digest is the digest of the file.
  Hasher file_hasher;
  std::ifstream in(blob, std::ios::binary);
  while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
    file_hasher.Update(std::string_view(buffer.data(), static_cast<size_t>(in.gcount())));
  }
  EXPECT_EQ(file_hasher.Finish(), layer->blob.digest);
}

}  // namespace
}  // namespace berth::imagegen
