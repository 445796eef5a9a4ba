// Hostile layers through the public entry point that applies them, archive::LayerApplier: each
// case asserts the error class (code and a key phrase) and that nothing beside the target root
// changed. The root sits next to a sentinel tree (a file, a nested file, a symlink and a
// directory) whose snapshot is compared after every apply. Large inputs are generated as
// streams: no case holds more than a few MB. Three targets: a directory with overlay whiteouts,
// one where whiteouts delete (native snapshots), and an EROFS layer image (the erofs
// snapshotter: the entries go to erofs::ImageWriter, and a successful apply is mounted on the
// root so the same checks read it).
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "berth/archive/layer_applier.h"
#include "berth/archive/test_util.h"
#include "berth/erofs/image_writer.h"
#include "berth/image/media_types.h"
#include "berth/snapshot/erofs_snapshotter.h"
#include "test/hostile/hostile_util.h"
#include "testing/result_matchers.h"
#include "testing/temp_dir.h"
#include "tools/imagegen/byte_sink.h"
#include "tools/imagegen/compress.h"
#include "tools/imagegen/file_tree.h"

namespace berth::hostile {
namespace {

namespace fs = std::filesystem;
namespace mt = berth::media_types;
using archive::ApplyOptions;
using archive::ApplyResult;
using archive::LayerApplier;
using archive::WhiteoutMode;
using archive::testing::Compress;
using archive::testing::RawHeader;
using archive::testing::RawTar;
using ::berth::testing::TempDir;

constexpr uint64_t kTenGigabytes = uint64_t{10} << 30;

enum class Target { kOverlayDirectory, kDeletingDirectory, kErofsImage };

class ArchiveHostileTest : public ::testing::TestWithParam<Target> {
 protected:
  void SetUp() override {
    if (GetParam() == Target::kErofsImage &&
        (::geteuid() != 0 || !snapshot::ErofsSnapshotter::KernelSupportsErofs())) {
      GTEST_SKIP() << "the erofs target mounts its images: needs root and erofs in the kernel";
    }
    ASSERT_OK_AND_ASSIGN(scratch_, TempDir::Create("archive"));
    root_ = scratch_.Join("root");
    sentinel_ = scratch_.Join("sentinel");
    fs::create_directories(root_);
    fs::create_directories(sentinel_ / "sub");
    std::ofstream(sentinel_ / "secret") << "do not touch";
    std::ofstream(sentinel_ / "sub" / "file") << "nested";
    fs::create_symlink("secret", sentinel_ / "link");
    before_ = SnapshotTree(sentinel_);
  }

  void TearDown() override { UnmountRoot(); }

  bool image() const { return GetParam() == Target::kErofsImage; }

  // Nothing beside the root changed: the sentinel tree is as it was, and the scratch dir holds
  // only root/ and sentinel/ (and the layer image, for the erofs target).
  void ExpectOutsideUntouched() {
    EXPECT_EQ(SnapshotTree(sentinel_), before_);
    std::vector<std::string> siblings;
    for (const auto& item : fs::directory_iterator(scratch_.path())) {
      if (image() && item.path() == ImagePath()) continue;
      siblings.push_back(item.path().filename().string());
    }
    std::sort(siblings.begin(), siblings.end());
    EXPECT_EQ(siblings, (std::vector<std::string>{"root", "sentinel"}));
  }

  fs::path ImagePath() const { return scratch_.Join("layer.erofs"); }

  Result<std::unique_ptr<LayerApplier>> NewApplier(std::string_view media_type,
                                                   ApplyOptions options = {}) {
    options.root = root_;
    options.media_type = std::string(media_type);
    options.whiteout_mode =
        GetParam() == Target::kDeletingDirectory ? WhiteoutMode::kDelete : WhiteoutMode::kOverlay;
    if (image()) {
      BERTH_ASSIGN_OR_RETURN(image_writer_, erofs::ImageWriter::Create(ImagePath()));
      options.visitor = image_writer_.get();
    }
    return LayerApplier::Create(options);
  }

  // Applies `blob`; for the erofs target, finishes the image and mounts it on the root.
  Result<ApplyResult> Apply(std::string_view blob, std::string_view media_type,
                            ApplyOptions options = {}) {
    BERTH_ASSIGN_OR_RETURN(auto applier, NewApplier(media_type, std::move(options)));
    for (size_t at = 0; at < blob.size(); at += 64 << 10) {
      BERTH_RETURN_IF_ERROR(applier->Write(blob.substr(at, 64 << 10)));
    }
    BERTH_ASSIGN_OR_RETURN(ApplyResult applied, applier->Finish());
    if (image()) {
      BERTH_RETURN_IF_ERROR(image_writer_->Finish());
      if (::mount(ImagePath().c_str(), root_.c_str(), "erofs", MS_RDONLY, nullptr) != 0) {
        return Fail(ErrnoError(errno, "mount the layer image on the root"));
      }
      root_mounted_ = true;
    }
    return applied;
  }

  void UnmountRoot() {
    if (root_mounted_) (void)::umount2(root_.c_str(), MNT_DETACH);
    root_mounted_ = false;
  }

  Result<ApplyResult> ApplyTar(std::string_view tar, ApplyOptions options = {}) {
    return Apply(tar, mt::kOciLayer, std::move(options));
  }

  void ResetRoot() {
    UnmountRoot();
    fs::remove(ImagePath());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }

  TempDir scratch_;
  fs::path root_;
  fs::path sentinel_;
  std::map<std::string, std::string> before_;
  std::unique_ptr<erofs::ImageWriter> image_writer_;
  bool root_mounted_ = false;
};

// ---------------------------------------------------------------------------------------------
// Path traversal

TEST_P(ArchiveHostileTest, DotDotTraversalIsPermissionDenied) {
  for (std::string name : {"../sentinel/pwned", "../sentinel/secret", "a/../../sentinel/secret",
                           "./../sentinel/sub/file", "..", "../"}) {
    RawTar tar;
    tar.Add({.name = name}, "pwned");
    EXPECT_TRUE(FailsWith(ApplyTar(tar.Finish()), ErrorCode::kPermissionDenied,
                          "has a \"..\" component and could escape the root"))
        << name;
    ResetRoot();
  }
  ExpectOutsideUntouched();
}

TEST_P(ArchiveHostileTest, AbsolutePathIsTakenRelativeToTheRoot) {
  const std::string absolute = (sentinel_ / "secret").string();
  RawTar tar;
  tar.Add({.name = absolute}, "pwned");
  tar.Add({.name = "/"}, "");  // the root itself as a file: refused or skipped, never replaced
  Result<ApplyResult> result = ApplyTar(tar.Finish());
  if (result) {
    std::ifstream in(root_ / absolute.substr(1));
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(content, "pwned");
  } else {
    EXPECT_TRUE(FailsWith(result, ErrorCode::kInvalidArgument, "names the root itself"));
  }
  // Without the entry naming the root, it applies inside the root.
  ResetRoot();
  RawTar only_absolute;
  only_absolute.Add({.name = absolute}, "pwned");
  ASSERT_TRUE(ApplyTar(only_absolute.Finish()));
  EXPECT_TRUE(fs::exists(root_ / absolute.substr(1)));
  ExpectOutsideUntouched();
}

TEST_P(ArchiveHostileTest, WritesThroughASymlinkStayInTheRoot) {
  const std::string up = "../../../../../../../../../../..";
  // Each link is resolved as if the root were "/" (RESOLVE_IN_ROOT), so it leads to a path
  // inside the root that does not exist: the member is refused, naming the link and its target
  // outside the layer.
  const std::vector<std::pair<RawHeader, RawHeader>> attacks = {
      {{.name = "abs", .type = '2', .linkname = sentinel_.string()}, {.name = "abs/secret"}},
      {{.name = "rel", .type = '2', .linkname = up + sentinel_.string()}, {.name = "rel/secret"}},
      {{.name = "rel", .type = '2', .linkname = up + sentinel_.string()}, {.name = "rel/sub/file"}},
      {{.name = "rel", .type = '2', .linkname = up + sentinel_.string()},
       {.name = "rel/newdir", .type = '5', .mode = 0777}},
      {{.name = "dotdot", .type = '2', .linkname = "../sentinel"}, {.name = "dotdot/secret"}},
  };
  for (const auto& [link, entry] : attacks) {
    RawTar tar;
    tar.Add(link);
    tar.Add(entry, entry.type == '0' ? "pwned" : "");
    EXPECT_TRUE(FailsWith(
        ApplyTar(tar.Finish()), ErrorCode::kPermissionDenied,
        "parent \"" + link.name + "\" is a symlink to " + link.linkname + ", outside the layer"))
        << link.name << " -> " << entry.name;
    ExpectOutsideUntouched();
    ResetRoot();
  }
  // A file member replacing a symlink to a file outside replaces the link, not its target.
  RawTar tar;
  tar.Add({.name = "file-link", .type = '2', .linkname = (sentinel_ / "secret").string()});
  tar.Add({.name = "file-link"}, "pwned");
  Result<ApplyResult> result = ApplyTar(tar.Finish());
  ASSERT_TRUE(result) << result.error().ToString();
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(root_ / "file-link")));
  ExpectOutsideUntouched();
}

TEST_P(ArchiveHostileTest, SymlinkedParentDirectoryIsResolvedInTheRoot) {
  RawTar tar;
  tar.Add({.name = "sentinel", .type = '5', .mode = 0755});
  tar.Add({.name = "sentinel/sub", .type = '5', .mode = 0755});
  tar.Add({.name = "dir", .type = '5', .mode = 0755});
  tar.Add({.name = "dir/escape", .type = '2', .linkname = "../../sentinel"});
  tar.Add({.name = "dir/escape/secret"}, "pwned");
  tar.Add({.name = "dir/escape/sub/file"}, "pwned");
  tar.Add({.name = "rootlink", .type = '2', .linkname = "/"});
  tar.Add({.name = "rootlink/rootlink/dir/escape/link"}, "pwned");
  Result<ApplyResult> result = ApplyTar(tar.Finish());
  ASSERT_TRUE(result) << (result ? "" : result.error().ToString());
  // "../../sentinel" from root/dir clamps at the root: the writes land in root/sentinel.
  EXPECT_TRUE(fs::is_regular_file(root_ / "sentinel" / "secret"));
  EXPECT_TRUE(fs::is_regular_file(root_ / "sentinel" / "sub" / "file"));
  EXPECT_TRUE(fs::is_regular_file(root_ / "sentinel" / "link"));
  ExpectOutsideUntouched();
}

TEST_P(ArchiveHostileTest, HardlinksCannotReachOutside) {
  {
    RawTar tar;
    tar.Add({.name = "h", .type = '1', .linkname = "../sentinel/secret"});
    EXPECT_TRUE(
        FailsWith(ApplyTar(tar.Finish()), ErrorCode::kPermissionDenied, "could escape the root"));
  }
  ResetRoot();
  {
    // An absolute target is taken inside the root, where there is no such file.
    RawTar tar;
    tar.Add({.name = "h", .type = '1', .linkname = (sentinel_ / "secret").string()});
    Result<ApplyResult> result = ApplyTar(tar.Finish());
    ASSERT_FALSE(result);
    EXPECT_NE(result.error().ToString().find("hardlink"), std::string::npos)
        << result.error().ToString();
  }
  ResetRoot();
  {
    // Through a symlink that points out: resolved in the root, so again no such file.
    RawTar tar;
    tar.Add({.name = "out", .type = '2', .linkname = sentinel_.string()});
    tar.Add({.name = "h", .type = '1', .linkname = "out/secret"});
    Result<ApplyResult> result = ApplyTar(tar.Finish());
    ASSERT_FALSE(result);
    EXPECT_NE(result.error().ToString().find("hardlink"), std::string::npos)
        << result.error().ToString();
  }
  struct stat st {};
  ASSERT_EQ(lstat((sentinel_ / "secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);  // no link to the sentinel was made anywhere
  ExpectOutsideUntouched();
}

// ---------------------------------------------------------------------------------------------
// Whiteouts

TEST_P(ArchiveHostileTest, WhiteoutsNamingDotDotOrTheRootAreRefused) {
  for (std::string name : {".wh...", "a/.wh...", ".wh..", "a/.wh..", ".wh.", "/.wh.", "a/.wh."}) {
    RawTar tar;
    tar.Add({.name = "a/", .type = '5', .mode = 0755});
    tar.Add({.name = name});
    EXPECT_TRUE(FailsWith(ApplyTar(tar.Finish()), ErrorCode::kPermissionDenied, "whiteout"))
        << name;
    ResetRoot();
  }
  {
    RawTar tar;
    tar.Add({.name = "../.wh.sentinel"});
    EXPECT_TRUE(
        FailsWith(ApplyTar(tar.Finish()), ErrorCode::kPermissionDenied, "could escape the root"));
  }
  ResetRoot();
  {
    // Whiteouts below a symlink pointing out act inside the root only.
    RawTar tar;
    tar.Add({.name = "out", .type = '2', .linkname = sentinel_.string()});
    tar.Add({.name = "out/.wh.secret"});
    tar.Add({.name = "out/.wh..wh..opq"});
    (void)ApplyTar(tar.Finish());
  }
  ExpectOutsideUntouched();
}

// ---------------------------------------------------------------------------------------------
// Sizes: sparse declarations, bombs, truncation

// A PAX 1.0 sparse member declaring `real_size` bytes with 4 bytes of data at offset 4096.
std::string SparseTar(uint64_t real_size) {
  std::string map = "1\n4096\n4\n";
  std::string stored = map + std::string(512 - map.size(), '\0') + "DATA";
  RawTar tar;
  tar.AddPax({{"GNU.sparse.major", "1"},
              {"GNU.sparse.minor", "0"},
              {"GNU.sparse.name", "huge.img"},
              {"GNU.sparse.realsize", std::to_string(real_size)}});
  tar.Add({.name = "GNUSparseFile.0/huge.img", .size = stored.size()}, stored);
  return tar.Finish();
}

TEST_P(ArchiveHostileTest, TenGigabyteSparseDeclarationOverTheLimitIsRefused) {
  ApplyOptions options;
  options.limits.max_entry_bytes = uint64_t{1} << 30;
  EXPECT_TRUE(FailsWith(ApplyTar(SparseTar(kTenGigabytes), options), ErrorCode::kInvalidArgument,
                        "max_entry_bytes"));
  EXPECT_FALSE(fs::exists(root_ / "huge.img"));
  ExpectOutsideUntouched();
}

TEST_P(ArchiveHostileTest, TenGigabyteSparseFileWithinTheLimitTakesNoSpace) {
  Result<ApplyResult> result = ApplyTar(SparseTar(kTenGigabytes));
  ASSERT_TRUE(result) << result.error().ToString();
  struct stat st {};
  ASSERT_EQ(lstat((root_ / "huge.img").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kTenGigabytes);
  // Holes, not 10 GB of zeros. EROFS reports a file's blocks from its size: there the image's
  // own allocation says what is stored, the data's chunk whole (1 MiB chunks at this size).
  if (image()) {
    ASSERT_EQ(lstat(ImagePath().c_str(), &st), 0);
  }
  EXPECT_LT(st.st_blocks * 512, image() ? 4 << 20 : 1 << 20);
  ExpectOutsideUntouched();
}

TEST_P(ArchiveHostileTest, GzipBombOverTheLimitIsResourceExhausted) {
  // 512 MiB of zeros in one member, deflated as it is generated (about 500 KiB compressed, a
  // ratio near 1000:1); the limit is 16 MiB.
  constexpr uint64_t kBombBytes = uint64_t{512} << 20;
  std::string blob;
  imagegen::StringSink sink(&blob);
  auto compressor = imagegen::MakeCompressor({.compression = imagegen::Compression::kGzip}, sink);
  ASSERT_TRUE(compressor) << compressor.error().ToString();
  auto header = RawTar::MakeHeader({.name = "zeros", .size = kBombBytes});
  ASSERT_TRUE((*compressor)->Write(std::string_view(header.data(), header.size())));
  const std::string zeros(1 << 20, '\0');
  for (uint64_t written = 0; written < kBombBytes + 1024; written += zeros.size()) {
    ASSERT_TRUE((*compressor)->Write(zeros));
  }
  ASSERT_TRUE((*compressor)->Finish());
  ASSERT_LT(blob.size(), kBombBytes / 500);

  ApplyOptions options;
  options.limits.max_uncompressed_bytes = 16 << 20;
  EXPECT_TRUE(FailsWith(Apply(blob, mt::kOciLayerGzip, options), ErrorCode::kResourceExhausted,
                        "decompression bomb"));
  struct stat st {};
  if (lstat((root_ / "zeros").c_str(), &st) == 0) {
    EXPECT_LE(st.st_size, 16 << 20);
  }
  ExpectOutsideUntouched();
}

TEST_P(ArchiveHostileTest, TruncatedCompressedStreamIsDataLoss) {
  imagegen::FileTree tree;
  tree.AddFile("etc/passwd", "root:x:0:0\n").AddFile("big", std::string(200000, 'x'));
  const std::string tar = archive::testing::TarOf(tree);
  for (auto [compression, media_type, name] :
       {std::tuple{imagegen::Compression::kGzip, mt::kOciLayerGzip, "gzip"},
        std::tuple{imagegen::Compression::kZstd, mt::kOciLayerZstd, "zstd"}}) {
    std::string blob = Compress(tar, compression);
    for (size_t keep : {blob.size() / 2, blob.size() - 1, size_t{10}}) {
      EXPECT_TRUE(FailsWith(Apply(std::string_view(blob).substr(0, keep), media_type),
                            ErrorCode::kDataLoss, std::string(name) + " stream is truncated"))
          << name << " cut to " << keep << " of " << blob.size();
      ResetRoot();
    }
  }
  ExpectOutsideUntouched();
}

TEST_P(ArchiveHostileTest, TarThatEndsEarlyIsDataLoss) {
  // A member declaring 10 GB whose data stops after 1 MiB, in a complete gzip stream; and a
  // tar cut inside a header.
  auto header = RawTar::MakeHeader({.name = "declared-10g", .size = kTenGigabytes});
  std::string tar(header.data(), header.size());
  tar += std::string(1 << 20, 'd');
  EXPECT_TRUE(FailsWith(Apply(Compress(tar, imagegen::Compression::kGzip), mt::kOciLayerGzip),
                        ErrorCode::kDataLoss, "tar archive is truncated"));
  ResetRoot();

  RawTar complete;
  complete.Add({.name = "a"}, "first");
  complete.Add({.name = "b"}, "second");
  std::string cut = complete.bytes().substr(0, 512 + 512 + 100);  // inside b's header
  EXPECT_TRUE(FailsWith(ApplyTar(cut), ErrorCode::kDataLoss, "tar archive is truncated"));
  ExpectOutsideUntouched();
}

INSTANTIATE_TEST_SUITE_P(Targets, ArchiveHostileTest,
                         ::testing::Values(Target::kOverlayDirectory, Target::kDeletingDirectory,
                                           Target::kErofsImage),
                         [](const auto& param_info) -> std::string {
                           switch (param_info.param) {
                             case Target::kOverlayDirectory:
                               return "overlay";
                             case Target::kDeletingDirectory:
                               return "delete";
                             case Target::kErofsImage:
                               return "erofs";
                           }
                           return "unknown";
                         });

}  // namespace
}  // namespace berth::hostile
