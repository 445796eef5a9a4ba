// Unpacker against real snapshotters on temp dirs, driven the way the puller drives a
// LayerHandler (Begin, PlanLayer per layer, observer Write/Reset/Finish, End), without a
// registry: layer blobs are generated with imagegen and put in a real content store.
#include "berth/unpack/unpacker.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <fstream>
#include <optional>
#include <set>
#include <thread>

#include "berth/snapshot/erofs_snapshotter.h"
#include "berth/snapshot/native_snapshotter.h"
#include "berth/snapshot/overlay_snapshotter.h"
#include "berth/snapshot/snapshot_test_util.h"
#include "testing/result_matchers.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"
#include "tools/imagegen/layer.h"

namespace berth::unpack {
namespace {

using ::berth::testing::FailsWith;

namespace fs = std::filesystem;
using ::testing::HasSubstr;

enum class Kind { kOverlay, kNative, kErofs };

// Whether the snapshotter of `kind` can rebase, so that layers stream as they download.
bool Streams(Kind kind) { return kind != Kind::kNative; }

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct TestImage {
  std::vector<imagegen::Layer> layers;
  image::Manifest manifest;
  image::ImageConfig config;
};

class UnpackerTest : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    std::string reason = GetParam() == Kind::kOverlay ? snapshot::testing::OverlaySkipReason()
                                                      : snapshot::testing::MountSkipReason();
    if (reason.empty() && GetParam() == Kind::kErofs &&
        !snapshot::ErofsSnapshotter::KernelSupportsErofs()) {
      reason = "the kernel has no erofs or overlay filesystem";
    }
    if (!reason.empty()) GTEST_SKIP() << reason;
    auto dir = berth::testing::TempDir::Create("unpack");
    ASSERT_OK(dir);
    dir_.emplace(std::move(*dir));
    auto store =
        content::Store::Open({.root = dir_->path() / "content", .durability = Durability::kNone});
    ASSERT_OK(store);
    store_ = std::move(*store);
    ASSERT_NO_FATAL_FAILURE(OpenSnapshotter());
  }

  void TearDown() override {
    if (dir_ && GetParam() == Kind::kErofs) ExpectEveryLayerImageClean();
    snapshotter_.reset();
    if (dir_) (void)snapshot::UnmountAll(dir_->path() / "mnt");
  }

  // Every EROFS image the test left behind passes erofs-utils' fsck.erofs, each file's data
  // read through.
  void ExpectEveryLayerImageClean() {
    std::error_code error;
    for (const auto& entry : fs::recursive_directory_iterator(dir_->path() / "snapshots", error)) {
      if (entry.path().filename() != "layer.erofs" || !entry.is_regular_file()) continue;
      auto fsck = berth::testing::RunCommand(
          {"/usr/bin/fsck.erofs", "--extract", entry.path().string()}, dir_->path());
      ASSERT_OK(fsck);
      EXPECT_EQ(fsck->exit_code, 0) << entry.path() << ": " << fsck->out << fsck->err;
    }
  }

  void OpenSnapshotter() {
    snapshot::LocalSnapshotterOptions options{.root = dir_->path() / "snapshots",
                                              .sync = Durability::kNone};
    if (GetParam() == Kind::kOverlay) {
      snapshot::OverlaySnapshotterOptions overlay;
      static_cast<snapshot::LocalSnapshotterOptions&>(overlay) = options;
      auto opened = snapshot::OverlaySnapshotter::Open(overlay);
      ASSERT_OK(opened);
      snapshotter_ = std::move(*opened);
    } else if (GetParam() == Kind::kErofs) {
      snapshot::ErofsSnapshotterOptions erofs;
      static_cast<snapshot::LocalSnapshotterOptions&>(erofs) = options;
      auto opened = snapshot::ErofsSnapshotter::Open(erofs);
      ASSERT_OK(opened);
      snapshotter_ = std::move(*opened);
    } else {
      snapshot::NativeSnapshotterOptions native;
      static_cast<snapshot::LocalSnapshotterOptions&>(native) = options;
      auto opened = snapshot::NativeSnapshotter::Open(native);
      ASSERT_OK(opened);
      snapshotter_ = std::move(*opened);
    }
  }

  // Builds an image from `trees`; the blobs go into the content store unless `store` is false.
  TestImage MakeImage(const std::vector<imagegen::FileTree>& trees, bool store = true,
                      imagegen::Compression compression = imagegen::Compression::kGzip) {
    TestImage out;
    for (const imagegen::FileTree& tree : trees) {
      auto layer = imagegen::BuildLayer(tree, {.compression = compression});
      EXPECT_OK(layer);
      if (!layer) return out;
      out.manifest.layers.push_back({.media_type = layer->blob.media_type,
                                     .digest = layer->blob.digest,
                                     .size = layer->blob.size});
      out.config.diff_ids.push_back(layer->diff_id);
      if (store) {
        auto written = store_->WriteBlob(layer->blob.digest, layer->bytes);
        EXPECT_OK(written);
      }
      out.layers.push_back(std::move(*layer));
    }
    return out;
  }

  // What the puller does for one layer: plan, stream the blob in small chunks, finish.
  Result<void> DeliverLayer(Unpacker& unpacker, const TestImage& image, size_t index) {
    BERTH_ASSIGN_OR_RETURN(pull::LayerPlan plan, unpacker.PlanLayer(index));
    if (plan.skip) {
      ++skipped_;
      return Ok();
    }
    const std::string& bytes = image.layers[index].bytes;
    if (!store_->Contains(image.layers[index].blob.digest)) {
      BERTH_RETURN_IF_ERROR(store_->WriteBlob(image.layers[index].blob.digest, bytes));
    }
    if (!plan.observer) return Ok();
    for (size_t offset = 0; offset < bytes.size(); offset += 700) {
      BERTH_RETURN_IF_ERROR(plan.observer->Write(std::string_view(bytes).substr(offset, 700)));
    }
    return plan.observer->Finish();
  }

  // Runs a whole "pull" with the layers delivered in `order` (default: in order).
  Result<void> Unpack(Unpacker& unpacker, const TestImage& image, std::vector<size_t> order = {}) {
    if (order.empty()) {
      for (size_t i = 0; i < image.layers.size(); ++i) order.push_back(i);
    }
    BERTH_RETURN_IF_ERROR(unpacker.Begin(image.manifest, image.config));
    Result<void> status = Ok();
    for (size_t index : order) {
      status = DeliverLayer(unpacker, image, index);
      if (!status) break;
    }
    Result<void> ended = unpacker.End(status.has_value());
    if (!status) return status;
    return ended;
  }

  Unpacker NewUnpacker() { return Unpacker(*snapshotter_, *store_, threads_, {}); }

  // Mounts a view of `chain_id` and returns where.
  fs::path MountView(const Digest& chain_id) {
    const std::string key = "view-" + std::to_string(views_++);
    auto mounts = snapshotter_->View(key, chain_id.ToString());
    EXPECT_OK(mounts);
    fs::path target = dir_->path() / "mnt" / key;
    fs::create_directories(target);
    auto mounted = snapshot::ScopedMount::Create(*mounts, target);
    EXPECT_OK(mounted);
    if (mounted) mounts_.push_back(std::move(*mounted));
    return target;
  }

  std::map<std::string, snapshot::Kind> Snapshots() {
    std::map<std::string, snapshot::Kind> found;
    auto walked = snapshotter_->Walk([&](const snapshot::Info& info) -> Result<void> {
      found[info.name] = info.kind;
      return Ok();
    });
    EXPECT_OK(walked);
    return found;
  }

  static std::vector<imagegen::FileTree> ThreeLayers() {
    imagegen::FileTree base;
    base.AddDirectory("etc")
        .AddFile("etc/os-release", "ID=base\n")
        .AddFile("etc/motd", "hello\n")
        .AddDirectory("var")
        .AddDirectory("var/cache")
        .AddFile("var/cache/old", "old")
        .AddFile("shared", "v1");
    imagegen::FileTree middle;
    middle.AddDirectory("app", {.mode = 0750, .uid = 10, .gid = 20})
        .AddFile("app/main", "#!/bin/sh\n", {.mode = 0755})
        .AddWhiteout("etc/motd")
        .AddFile("shared", "v2");
    imagegen::FileTree top;
    top.AddDirectory("var")
        .AddDirectory("var/cache")
        .AddOpaqueWhiteout("var/cache")
        .AddFile("var/cache/new", "new")
        .AddSymlink("bin-sh", "/app/main")
        .AddFile("shared", "v3");
    return {base, middle, top};
  }

  void ExpectThreeLayerRootfs(const Digest& chain_id) {
    fs::path root = MountView(chain_id);
    EXPECT_EQ(ReadAll(root / "etc/os-release"), "ID=base\n");
    EXPECT_FALSE(fs::exists(fs::symlink_status(root / "etc/motd")));
    EXPECT_EQ(ReadAll(root / "shared"), "v3");
    EXPECT_EQ(ReadAll(root / "app/main"), "#!/bin/sh\n");
    EXPECT_FALSE(fs::exists(root / "var/cache/old"));
    EXPECT_EQ(ReadAll(root / "var/cache/new"), "new");
    EXPECT_EQ(fs::read_symlink(root / "bin-sh"), "/app/main");
    struct stat st;
    ASSERT_EQ(::lstat((root / "app").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0750u);
    EXPECT_EQ(st.st_uid, 10u);
    EXPECT_EQ(st.st_gid, 20u);
  }

  std::optional<berth::testing::TempDir> dir_;
  std::unique_ptr<content::Store> store_;
  LayerThreadBudget threads_;
  std::unique_ptr<snapshot::Snapshotter> snapshotter_;
  std::vector<snapshot::ScopedMount> mounts_;
  int views_ = 0;
  int skipped_ = 0;
};

TEST_P(UnpackerTest, CommitsTheChainEvenWhenLayersFinishOutOfOrder) {
  TestImage image = MakeImage(ThreeLayers());
  Unpacker unpacker = NewUnpacker();
  ASSERT_TRUE(Unpack(unpacker, image, {2, 0, 1}));
  std::vector<Digest> chain = image::ChainIds(image.config.diff_ids);
  EXPECT_EQ(unpacker.chain_id(), chain.back());
  for (size_t i = 0; i < chain.size(); ++i) {
    auto info = snapshotter_->Stat(chain[i].ToString());
    ASSERT_OK(info);
    EXPECT_EQ(info->kind, snapshot::Kind::kCommitted);
    EXPECT_EQ(info->parent, i == 0 ? "" : chain[i - 1].ToString());
  }
  EXPECT_EQ(Snapshots().size(), 3u) << "no active snapshot is left";
  UnpackStats stats = unpacker.stats();
  EXPECT_EQ(stats.committed, 3u);
  if (GetParam() == Kind::kErofs) {
    // Each layer was streamed into its image; no files were unpacked.
    size_t images = 0;
    for (const auto& entry : fs::directory_iterator(dir_->path() / "snapshots/snapshots")) {
      if (fs::is_regular_file(entry.path() / "layer.erofs")) ++images;
      EXPECT_TRUE(fs::is_empty(entry.path() / "fs")) << entry.path();
      EXPECT_FALSE(fs::exists(entry.path() / "layer.erofs.partial")) << entry.path();
    }
    EXPECT_EQ(images, 3u);
  }
  if (Streams(GetParam())) {
    EXPECT_EQ(stats.streamed, 3u);
  } else {
    EXPECT_EQ(stats.applied_from_store, 3u);
  }
  ExpectThreeLayerRootfs(unpacker.chain_id());
}

TEST_P(UnpackerTest, LayersUnpackFromConcurrentThreads) {
  TestImage image = MakeImage(ThreeLayers());
  Unpacker unpacker = NewUnpacker();
  ASSERT_TRUE(unpacker.Begin(image.manifest, image.config));
  std::vector<std::thread> threads;
  std::vector<Result<void>> results(3, Ok());
  for (size_t i : {2, 1, 0}) {
    threads.emplace_back([&, i] { results[i] = DeliverLayer(unpacker, image, i); });
  }
  for (auto& thread : threads) thread.join();
  for (auto& result : results) ASSERT_OK(result);
  ASSERT_TRUE(unpacker.End(true));
  ExpectThreeLayerRootfs(unpacker.chain_id());
}

TEST_P(UnpackerTest, CommittedLayersAreSkippedAndSharedByTheNextImage) {
  std::vector<imagegen::FileTree> trees = ThreeLayers();
  TestImage first = MakeImage(trees);
  Unpacker unpacker = NewUnpacker();
  ASSERT_TRUE(Unpack(unpacker, first));

  // The same image again: every layer is already there.
  Unpacker again = NewUnpacker();
  skipped_ = 0;
  ASSERT_TRUE(Unpack(again, first));
  EXPECT_EQ(skipped_, 3);
  EXPECT_EQ(again.stats().already_present, 3u);
  EXPECT_EQ(again.chain_id(), unpacker.chain_id());

  // An image with one more layer: only that one is unpacked.
  imagegen::FileTree extra;
  extra.AddFile("extra", "x");
  trees.push_back(extra);
  TestImage second = MakeImage(trees);
  Unpacker next = NewUnpacker();
  skipped_ = 0;
  ASSERT_TRUE(Unpack(next, second));
  EXPECT_EQ(skipped_, 3);
  EXPECT_EQ(next.stats().committed, 1u);
  EXPECT_EQ(snapshotter_->Stat(next.chain_id().ToString())->parent, unpacker.chain_id().ToString());
  fs::path root = MountView(next.chain_id());
  EXPECT_EQ(ReadAll(root / "extra"), "x");
  EXPECT_EQ(ReadAll(root / "shared"), "v3");
}

// A destination with a prefix and a base (containerd's remote snapshots): the layers the base
// holds are neither delivered nor unpacked, the rest are committed under the prefix with the
// first of them on the base, and berth's own chain-ID names are left alone.
TEST_P(UnpackerTest, DestinationNamesTheSnapshotsAndStacksThemOnItsBase) {
  TestImage image = MakeImage(ThreeLayers());
  const std::vector<Digest> chain = image::ChainIds(image.config.diff_ids);
  // The base: the image's first layer, under a name of someone else's.
  Unpacker base_unpacker(*snapshotter_, *store_, threads_,
                         {.destination = {.name_prefix = "theirs/"}});
  TestImage first_layer_only = image;
  first_layer_only.layers.erase(first_layer_only.layers.begin() + 1, first_layer_only.layers.end());
  first_layer_only.manifest.layers.erase(first_layer_only.manifest.layers.begin() + 1,
                                         first_layer_only.manifest.layers.end());
  first_layer_only.config.diff_ids.erase(first_layer_only.config.diff_ids.begin() + 1,
                                         first_layer_only.config.diff_ids.end());
  ASSERT_TRUE(Unpack(base_unpacker, first_layer_only));
  const std::string base = "theirs/" + chain[0].ToString();
  ASSERT_EQ(snapshotter_->Stat(base)->kind, snapshot::Kind::kCommitted);

  Unpacker unpacker(
      *snapshotter_, *store_, threads_,
      {.destination = {
           .name_prefix = "staged/", .base_snapshot = base, .base_chain_id = chain[0]}});
  skipped_ = 0;
  ASSERT_TRUE(Unpack(unpacker, image, {2, 0, 1}));
  EXPECT_EQ(skipped_, 1) << "the layer under the base was planned for download";
  EXPECT_EQ(unpacker.stats().committed, 2u);
  EXPECT_EQ(unpacker.SnapshotName(2), "staged/" + chain[2].ToString());
  EXPECT_EQ(snapshotter_->Stat("staged/" + chain[1].ToString())->parent, base);
  EXPECT_EQ(snapshotter_->Stat("staged/" + chain[2].ToString())->parent,
            "staged/" + chain[1].ToString());
  for (const Digest& chain_id : chain) {
    EXPECT_THAT(snapshotter_->Stat(chain_id.ToString()), FailsWith(ErrorCode::kNotFound));
  }
  EXPECT_EQ(Snapshots().size(), 3u) << "no active snapshot is left";
  const std::string key = "rootfs";
  ASSERT_OK(snapshotter_->View(key, "staged/" + chain[2].ToString()));
  fs::path root = dir_->path() / "mnt" / key;
  fs::create_directories(root);
  auto mounted = snapshot::ScopedMount::Create(*snapshotter_->Mounts(key), root);
  ASSERT_OK(mounted);
  EXPECT_EQ(ReadAll(root / "etc/os-release"), "ID=base\n");
  EXPECT_EQ(ReadAll(root / "shared"), "v3");
  EXPECT_EQ(ReadAll(root / "var/cache/new"), "new");
}

TEST_P(UnpackerTest, ABaseThatIsNotOneOfTheImagesLayersIsRefused) {
  TestImage image = MakeImage(ThreeLayers());
  Unpacker unpacker(*snapshotter_, *store_, threads_,
                    {.destination = {.name_prefix = "staged/",
                                     .base_snapshot = "elsewhere",
                                     .base_chain_id = Digest::Sha256Of("another image")}});
  EXPECT_THAT(unpacker.Begin(image.manifest, image.config), FailsWith(ErrorCode::kInvalidArgument));
}

TEST_P(UnpackerTest, WrongDiffIdIsDataLossAndCommitsNothing) {
  TestImage image = MakeImage(ThreeLayers());
  image.config.diff_ids[0] = Digest::Sha256Of("not the layer");
  Unpacker unpacker = NewUnpacker();
  Result<void> unpacked = Unpack(unpacker, image);
  ASSERT_FALSE(unpacked);
  EXPECT_THAT(unpacked, FailsWith(ErrorCode::kDataLoss));
  EXPECT_THAT(unpacked.error().ToString(), HasSubstr("diff_ids[0]"));
  EXPECT_TRUE(Snapshots().empty()) << "neither committed nor active snapshots remain";
}

TEST_P(UnpackerTest, HostileLayerIsRefusedAndLeavesNothing) {
  imagegen::FileTree good;
  good.AddFile("ok", "ok");
  imagegen::FileTree evil;
  evil.Add({.path = "../escaped", .type = imagegen::EntryType::kRegular}, "gotcha");
  TestImage image = MakeImage({good, evil});
  Unpacker unpacker = NewUnpacker();
  Result<void> unpacked = Unpack(unpacker, image);
  ASSERT_FALSE(unpacked);
  EXPECT_THAT(unpacked, FailsWith(ErrorCode::kPermissionDenied));
  EXPECT_THAT(unpacked.error().ToString(), HasSubstr(".."));
  EXPECT_FALSE(fs::exists(dir_->path() / "escaped"));
  EXPECT_FALSE(fs::exists(dir_->path() / "snapshots" / "escaped"));
  for (const auto& [name, kind] : Snapshots()) {
    EXPECT_EQ(kind, snapshot::Kind::kCommitted) << name << " is left behind";
  }
}

// A reserve no filesystem can keep (an exbibyte): the first layer stops as it starts writing,
// with an error naming the layer, how far it inflated, the filesystem and the reserve.
TEST_P(UnpackerTest, LayerThatWouldCrossTheFreeSpaceReserveIsRefusedAndLeavesNothing) {
  TestImage image = MakeImage(ThreeLayers());
  Unpacker unpacker(*snapshotter_, *store_, threads_, {.min_free_bytes = uint64_t{1} << 60});
  Result<void> unpacked = Unpack(unpacker, image);
  ASSERT_FALSE(unpacked);
  EXPECT_THAT(unpacked, FailsWith(ErrorCode::kResourceExhausted));
  const std::string message = unpacked.error().ToString();
  EXPECT_THAT(message, HasSubstr(image.manifest.layers[0].digest.ToString()));
  EXPECT_THAT(message, HasSubstr("had inflated to"));
  EXPECT_THAT(message, HasSubstr("the filesystem at /"));
  EXPECT_THAT(message, HasSubstr("below the reserve of "));
  EXPECT_THAT(message, HasSubstr("pull.min_free_space"));
  EXPECT_TRUE(Snapshots().empty()) << "neither committed nor active snapshots remain";

  // A reserve the filesystem keeps does not get in the way.
  Unpacker kept(*snapshotter_, *store_, threads_, {.min_free_bytes = 1, .min_free_percent = 0.001});
  EXPECT_TRUE(Unpack(kept, image).has_value());
}

TEST_P(UnpackerTest, LayerInflatingPastTheRatioIsRefusedAsABomb) {
  imagegen::FileTree bomb;
  bomb.AddFile("zeros", std::string(16 << 20, '\0'));
  TestImage image = MakeImage({bomb});
  const int64_t compressed = image.manifest.layers[0].size;
  ASSERT_LT(compressed, 64 << 10);
  Unpacker unpacker(*snapshotter_, *store_, threads_, {.max_inflate_ratio = 100});
  Result<void> unpacked = Unpack(unpacker, image);
  ASSERT_FALSE(unpacked);
  EXPECT_THAT(unpacked, FailsWith(ErrorCode::kInvalidArgument));
  const std::string message = unpacked.error().ToString();
  EXPECT_THAT(message, HasSubstr(image.manifest.layers[0].digest.ToString()));
  EXPECT_THAT(message, HasSubstr(fmt::format("({} bytes) compressed", compressed)));
  EXPECT_THAT(message, HasSubstr("decompression bomb"));
  EXPECT_TRUE(Snapshots().empty()) << "neither committed nor active snapshots remain";

  // An ordinary layer is well within the ratio.
  Unpacker ordinary(*snapshotter_, *store_, threads_, {.max_inflate_ratio = 100});
  EXPECT_TRUE(Unpack(ordinary, MakeImage(ThreeLayers())).has_value());
}

TEST_P(UnpackerTest, ResetStartsTheLayerAgain) {
  TestImage image = MakeImage(ThreeLayers());
  Unpacker unpacker = NewUnpacker();
  ASSERT_TRUE(unpacker.Begin(image.manifest, image.config));
  for (size_t i = 0; i < 3; ++i) {
    auto plan = unpacker.PlanLayer(i);
    ASSERT_OK(plan);
    const std::string& bytes = image.layers[i].bytes;
    // Half the blob, then the server ignores our Range request and we start from 0.
    ASSERT_TRUE(plan->observer->Write(std::string_view(bytes).substr(0, bytes.size() / 2)));
    ASSERT_TRUE(plan->observer->Reset());
    ASSERT_TRUE(plan->observer->Write(bytes));
    ASSERT_TRUE(plan->observer->Finish());
  }
  ASSERT_TRUE(unpacker.End(true));
  EXPECT_EQ(Snapshots().size(), 3u);
  ExpectThreeLayerRootfs(unpacker.chain_id());
}

TEST_P(UnpackerTest, HardlinkToALowerLayerIsResolved) {
  imagegen::FileTree base;
  base.AddDirectory("bin").AddFile("bin/tool", "tool-bytes", {.mode = 0755});
  imagegen::FileTree upper;
  upper.AddDirectory("usr").AddHardlink("usr/tool", "bin/tool");
  TestImage image = MakeImage({base, upper});
  Unpacker unpacker = NewUnpacker();
  ASSERT_TRUE(Unpack(unpacker, image, {1, 0}));
  if (Streams(GetParam())) {
    EXPECT_EQ(unpacker.stats().streamed, 1u);
    EXPECT_EQ(unpacker.stats().applied_from_store, 1u) << "the linking layer is applied again";
  }
  EXPECT_EQ(Snapshots().size(), 2u) << "the diverted streaming attempt is gone";
  fs::path root = MountView(unpacker.chain_id());
  EXPECT_EQ(ReadAll(root / "usr/tool"), "tool-bytes");
  EXPECT_EQ(ReadAll(root / "bin/tool"), "tool-bytes");
}

// Layers 2 and 3 add files to directories of layer 1 without entries of their own for them.
std::vector<imagegen::FileTree> ImplicitDirectoryLayers() {
  constexpr int64_t k2001 = 978'307'200;  // 2001-01-01T00:00:00Z
  imagegen::FileTree base;
  base.AddDirectory("etc", {.mode = 0700, .uid = 1000, .gid = 1001, .mtime_seconds = k2001})
      .AddFile("etc/os-release", "ID=base\n", {.mtime_seconds = k2001})
      .AddDirectory("var", {.mode = 0711, .uid = 7, .mtime_seconds = k2001 + 1})
      .AddDirectory("var/lib", {.mode = 0750, .uid = 8, .gid = 9, .mtime_seconds = k2001 + 2});
  imagegen::FileTree middle;
  middle.AddFile("etc/newfile", "new\n", {.mtime_seconds = 1'600'000'000})
      .AddWhiteout("var/lib/gone")
      .AddFile("opt/tool/bin", "t", {.mtime_seconds = 1'500'000'000});
  imagegen::FileTree top;
  top.AddFile("etc/another", "x").AddFile("var/lib/db", "db");
  return {base, middle, top};
}

void ExpectDirectory(const fs::path& path, mode_t mode, uid_t uid, gid_t gid,
                     std::optional<int64_t> mtime) {
  SCOPED_TRACE(path.string());
  struct stat st;
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, mode);
  EXPECT_EQ(st.st_uid, uid);
  EXPECT_EQ(st.st_gid, gid);
  if (mtime) {
    EXPECT_EQ(st.st_mtim.tv_sec, *mtime);
  }
}

TEST_P(UnpackerTest, DirectoriesWithoutEntriesKeepTheLowerLayersAttributes) {
  TestImage image = MakeImage(ImplicitDirectoryLayers());
  Unpacker unpacker = NewUnpacker();
  // The upper layers stream (and finish) before their parents are committed.
  ASSERT_TRUE(Unpack(unpacker, image, {2, 1, 0}));
  // Overlay and erofs layers hold only their own files: their implicit directories show the
  // lower layers' times.
  const bool layered = Streams(GetParam());
  if (layered) {
    EXPECT_EQ(unpacker.stats().streamed, 3u);
  }
  EXPECT_EQ(Snapshots().size(), 3u) << "the views of the lower layers are gone";
  // The middle layer alone: "etc" inherits from the single lower layer.
  std::vector<Digest> chain = image::ChainIds(image.config.diff_ids);
  fs::path middle = MountView(chain[1]);
  ExpectDirectory(middle / "etc", 0700, 1000, 1001,
                  layered ? std::optional<int64_t>(978'307'200) : std::nullopt);
  // The whole stack: the top layer's parents are two layers deep.
  fs::path root = MountView(unpacker.chain_id());
  EXPECT_EQ(ReadAll(root / "etc/newfile"), "new\n");
  EXPECT_EQ(ReadAll(root / "etc/another"), "x");
  // Native snapshots change the directory itself, so its mtime is the unpack's there.
  std::optional<int64_t> old = layered ? std::optional<int64_t>(978'307'200) : std::nullopt;
  ExpectDirectory(root / "etc", 0700, 1000, 1001, old);
  ExpectDirectory(root / "var", 0711, 7, 0,
                  layered ? std::optional<int64_t>(978'307'201) : std::nullopt);
  ExpectDirectory(root / "var/lib", 0750, 8, 9,
                  layered ? std::optional<int64_t>(978'307'202) : std::nullopt);
  // No lower layer has "opt": default attributes, and the newest mtime of its children.
  ExpectDirectory(root / "opt", 0755, 0, 0, 1'500'000'000);
  ExpectDirectory(root / "opt/tool", 0755, 0, 0, 1'500'000'000);
}

TEST_P(UnpackerTest, DirectoriesWithoutEntriesFromTheStoreKeepTheLowerLayersAttributes) {
  TestImage image = MakeImage(ImplicitDirectoryLayers());
  auto chain_id = UnpackImage(*store_, *snapshotter_, threads_, image.manifest, image.config);
  ASSERT_OK(chain_id);
  const bool layered = Streams(GetParam());
  fs::path root = MountView(*chain_id);
  ExpectDirectory(root / "etc", 0700, 1000, 1001,
                  layered ? std::optional<int64_t>(978'307'200) : std::nullopt);
  ExpectDirectory(root / "var/lib", 0750, 8, 9,
                  layered ? std::optional<int64_t>(978'307'202) : std::nullopt);
  ExpectDirectory(root / "opt", 0755, 0, 0, 1'500'000'000);
}

TEST_P(UnpackerTest, ConcurrentUnpacksOfOneImageBothSucceed) {
  TestImage image = MakeImage(ThreeLayers());
  Unpacker first = NewUnpacker();
  Unpacker second = NewUnpacker();
  ASSERT_TRUE(first.Begin(image.manifest, image.config));
  ASSERT_TRUE(second.Begin(image.manifest, image.config));
  // Both plan every layer before either commits anything.
  std::vector<pull::LayerPlan> plans_first, plans_second;
  for (size_t i = 0; i < 3; ++i) {
    auto a = first.PlanLayer(i);
    auto b = second.PlanLayer(i);
    ASSERT_TRUE(a && b);
    plans_first.push_back(std::move(*a));
    plans_second.push_back(std::move(*b));
  }
  for (auto* plans : {&plans_first, &plans_second}) {
    for (size_t i = 0; i < 3; ++i) {
      ASSERT_TRUE((*plans)[i].observer->Write(image.layers[i].bytes));
      auto finished = (*plans)[i].observer->Finish();
      ASSERT_OK(finished);
    }
  }
  ASSERT_TRUE(first.End(true));
  ASSERT_TRUE(second.End(true));
  EXPECT_EQ(first.chain_id(), second.chain_id());
  EXPECT_EQ(first.stats().committed, 3u);
  EXPECT_EQ(second.stats().lost_races, 3u);
  EXPECT_EQ(Snapshots().size(), 3u) << "the loser's copies are gone";
}

TEST_P(UnpackerTest, EndWithoutSuccessRemovesActiveSnapshots) {
  TestImage image = MakeImage(ThreeLayers());
  Unpacker unpacker = NewUnpacker();
  ASSERT_TRUE(unpacker.Begin(image.manifest, image.config));
  auto plan = unpacker.PlanLayer(1);
  ASSERT_TRUE(plan);
  ASSERT_TRUE(plan->observer->Write(image.layers[1].bytes));
  ASSERT_TRUE(plan->observer->Finish());  // applied, waiting for layer 0
  ASSERT_TRUE(unpacker.End(false));
  EXPECT_TRUE(Snapshots().empty());
}

TEST_P(UnpackerTest, UnpackImageAppliesFromTheStore) {
  TestImage image = MakeImage(ThreeLayers(), true, imagegen::Compression::kZstd);
  UnpackStats stats;
  auto chain_id =
      UnpackImage(*store_, *snapshotter_, threads_, image.manifest, image.config, {}, &stats);
  ASSERT_OK(chain_id);
  EXPECT_EQ(stats.applied_from_store, 3u);
  ExpectThreeLayerRootfs(*chain_id);
  // Again: nothing to do.
  auto again =
      UnpackImage(*store_, *snapshotter_, threads_, image.manifest, image.config, {}, &stats);
  ASSERT_TRUE(again);
  EXPECT_EQ(stats.already_present, 3u);
  EXPECT_EQ(stats.committed, 0u);
}

TEST_P(UnpackerTest, UnpackImageNeedsTheBlobs) {
  TestImage image = MakeImage(ThreeLayers(), /*store=*/false);
  auto chain_id = UnpackImage(*store_, *snapshotter_, threads_, image.manifest, image.config);
  ASSERT_FALSE(chain_id);
  EXPECT_THAT(chain_id, FailsWith(ErrorCode::kNotFound));
  EXPECT_TRUE(Snapshots().empty());
}

INSTANTIATE_TEST_SUITE_P(Snapshotters, UnpackerTest,
                         ::testing::Values(Kind::kOverlay, Kind::kNative, Kind::kErofs),
                         [](const auto& param_info) {
                           switch (param_info.param) {
                             case Kind::kOverlay:
                               return "Overlay";
                             case Kind::kNative:
                               return "Native";
                             case Kind::kErofs:
                               return "Erofs";
                           }
                           return "Unknown";
                         });

// kAuto: a layer that starts alone gets three threads (receive, inflate, untar); while others
// apply, two as long as everyone's threads fit the cores, else one. A layer's place is freed
// when its slot goes.
TEST(LayerThreadBudgetTest, AutoGivesALoneLayerThreeThreadsAndSharesTheCores) {
  using archive::ApplyThreading;
  using Mode = UnpackOptions::LayerThreads;
  LayerThreadBudget two_cores(2);
  {
    LayerThreadBudget::Slot alone = two_cores.Begin(Mode::kAuto);
    EXPECT_EQ(alone.threading(), ApplyThreading::kThreeThreads);
    LayerThreadBudget::Slot second = two_cores.Begin(Mode::kAuto);
    EXPECT_EQ(second.threading(), ApplyThreading::kSingle);
  }
  EXPECT_EQ(two_cores.Begin(Mode::kAuto).threading(), ApplyThreading::kThreeThreads);

  LayerThreadBudget four_cores(4);
  LayerThreadBudget::Slot first = four_cores.Begin(Mode::kAuto);
  LayerThreadBudget::Slot second = four_cores.Begin(Mode::kAuto);
  LayerThreadBudget::Slot third = four_cores.Begin(Mode::kAuto);
  LayerThreadBudget::Slot fourth = four_cores.Begin(Mode::kAuto);
  EXPECT_EQ(first.threading(), ApplyThreading::kThreeThreads);
  EXPECT_EQ(second.threading(), ApplyThreading::kTwoThreads);  // 1 + 2 threads fit 4 cores
  EXPECT_EQ(third.threading(), ApplyThreading::kTwoThreads);   // 2 + 2 fit
  EXPECT_EQ(fourth.threading(), ApplyThreading::kSingle);      // 3 + 2 do not

  LayerThreadBudget one_core(1);
  EXPECT_EQ(one_core.Begin(Mode::kAuto).threading(), ApplyThreading::kSingle);
  EXPECT_EQ(one_core.Begin(Mode::kOne).threading(), ApplyThreading::kSingle);
  EXPECT_EQ(one_core.Begin(Mode::kTwo).threading(), ApplyThreading::kTwoThreads);
  EXPECT_EQ(one_core.Begin(Mode::kThree).threading(), ApplyThreading::kThreeThreads);
}

}  // namespace
}  // namespace berth::unpack
