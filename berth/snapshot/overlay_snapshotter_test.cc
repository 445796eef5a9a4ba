// Overlay-specific behaviour: the exact mounts, the option-length limit, the apply target and
// stale directories. The lifecycle itself is covered by the conformance suite.
#include "berth/snapshot/overlay_snapshotter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <optional>
#include <string>

#include "berth/snapshot/native_snapshotter.h"
#include "berth/snapshot/snapshot_test_util.h"
#include "testing/temp_dir.h"

namespace berth::snapshot {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::OverlaySkipReason;
using testing::WriteTestFile;

class OverlaySnapshotterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string reason = OverlaySkipReason();
    if (!reason.empty()) GTEST_SKIP() << reason;
    auto dir = berth::testing::TempDir::Create("overlay");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
  }

  void Open(const fs::path& root) {
    auto opened = OverlaySnapshotter::Open({{.root = root, .sync = Durability::kNone}});
    ASSERT_TRUE(opened) << opened.error().ToString();
    snapshotter_ = std::move(*opened);
  }

  std::string LayerDir(std::string_view key) {
    auto id = snapshotter_->IdForTest(key);
    EXPECT_TRUE(id) << id.error().ToString();
    return (snapshotter_->SnapshotDir(id ? *id : 0) / "fs").string();
  }

  void Commit(const std::string& name, const std::string& parent) {
    ASSERT_TRUE(snapshotter_->Prepare(name + "-active", parent, {}));
    ASSERT_TRUE(snapshotter_->Commit(name, name + "-active", {}));
  }

  std::optional<berth::testing::TempDir> dir_;
  std::unique_ptr<OverlaySnapshotter> snapshotter_;
};

TEST_F(OverlaySnapshotterTest, MountsFollowTheDocumentedShapes) {
  ASSERT_NO_FATAL_FAILURE(Open(dir_->path() / "root"));
  ASSERT_NO_FATAL_FAILURE(Commit("l1", ""));
  ASSERT_NO_FATAL_FAILURE(Commit("l2", "l1"));
  ASSERT_NO_FATAL_FAILURE(Commit("l3", "l2"));

  auto lone = snapshotter_->Prepare("lone", "", {});
  ASSERT_TRUE(lone);
  EXPECT_THAT(*lone, ElementsAre(Mount{"bind", LayerDir("lone"), {"rbind", "rw"}}));

  auto empty_view = snapshotter_->View("empty-view", "", {});
  ASSERT_TRUE(empty_view);
  EXPECT_THAT(*empty_view, ElementsAre(Mount{"bind", LayerDir("empty-view"), {"rbind", "ro"}}));

  // One parent and no upper: overlay would need two lowerdirs, so a read-only bind.
  auto single_view = snapshotter_->View("single-view", "l1", {});
  ASSERT_TRUE(single_view);
  EXPECT_THAT(*single_view, ElementsAre(Mount{"bind", LayerDir("l1"), {"rbind", "ro"}}));

  const std::string id_dir = fs::path(LayerDir("lone")).parent_path().string();
  auto container = snapshotter_->Prepare("container", "l3", {});
  ASSERT_TRUE(container);
  const std::string work = (fs::path(LayerDir("container")).parent_path() / "work").string();
  EXPECT_THAT(*container,
              ElementsAre(Mount{
                  "overlay",
                  "overlay",
                  {"index=off", "workdir=" + work, "upperdir=" + LayerDir("container"),
                   "lowerdir=" + LayerDir("l3") + ":" + LayerDir("l2") + ":" + LayerDir("l1")}}));

  auto deep_view = snapshotter_->View("deep-view", "l2", {});
  ASSERT_TRUE(deep_view);
  EXPECT_THAT(*deep_view, ElementsAre(Mount{
                              "overlay",
                              "overlay",
                              {"index=off", "lowerdir=" + LayerDir("l2") + ":" + LayerDir("l1")}}));
}

TEST_F(OverlaySnapshotterTest, ApplyTargetIsTheUpperDirWithOverlayWhiteouts) {
  ASSERT_NO_FATAL_FAILURE(Open(dir_->path() / "root"));
  ASSERT_TRUE(snapshotter_->Prepare("extract", "", {}));
  auto target = snapshotter_->GetApplyTarget("extract");
  ASSERT_TRUE(target);
  EXPECT_EQ(target->directory.string(), LayerDir("extract"));
  EXPECT_EQ(target->whiteouts, WhiteoutStyle::kOverlay);
  EXPECT_EQ(target->opaque_xattr, "trusted.overlay.opaque");  // we run as root
}

TEST_F(OverlaySnapshotterTest, ApplyTargetListsTheParentLayersNearestFirst) {
  ASSERT_NO_FATAL_FAILURE(Open(dir_->path() / "root"));
  ASSERT_NO_FATAL_FAILURE(Commit("l1", ""));
  ASSERT_NO_FATAL_FAILURE(Commit("l2", "l1"));
  ASSERT_TRUE(snapshotter_->Prepare("extract", "l2", {}));
  auto target = snapshotter_->GetApplyTarget("extract");
  ASSERT_TRUE(target) << target.error().ToString();
  EXPECT_THAT(target->lower_dirs, ElementsAre(fs::path(LayerDir("l2")), fs::path(LayerDir("l1"))));
  ASSERT_TRUE(snapshotter_->Prepare("parentless", "", {}));
  auto parentless = snapshotter_->GetApplyTarget("parentless");
  ASSERT_TRUE(parentless) << parentless.error().ToString();
  EXPECT_TRUE(parentless->lower_dirs.empty());
}

TEST_F(OverlaySnapshotterTest, ChildLayerStartsWithTheParentRootOwnerAndMode) {
  ASSERT_NO_FATAL_FAILURE(Open(dir_->path() / "root"));
  ASSERT_TRUE(snapshotter_->Prepare("base-active", "", {}));
  auto target = snapshotter_->GetApplyTarget("base-active");
  ASSERT_TRUE(target);
  ASSERT_EQ(::chown(target->directory.c_str(), 123, 456), 0);
  ASSERT_EQ(::chmod(target->directory.c_str(), 0750), 0);
  ASSERT_TRUE(snapshotter_->Commit("base", "base-active", {}));
  ASSERT_TRUE(snapshotter_->Prepare("child", "base", {}));
  struct stat st;
  ASSERT_EQ(::stat(LayerDir("child").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 123u);
  EXPECT_EQ(st.st_gid, 456u);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
}

TEST_F(OverlaySnapshotterTest, TooManyLowerdirsFailCleanly) {
  // A long root makes each lowerdir ~260 bytes, so a handful of layers overflow one page.
  const fs::path root = dir_->path() / std::string(200, 'r');
  ASSERT_NO_FATAL_FAILURE(Open(root));
  std::string parent;
  int layers = 0;
  Result<std::vector<Mount>> prepared;
  while (true) {
    std::string name = "layer" + std::to_string(layers);
    prepared = snapshotter_->Prepare(name + "-active", parent, {});
    if (!prepared) break;
    ASSERT_TRUE(snapshotter_->Commit(name, name + "-active", {}));
    parent = name;
    ASSERT_LT(++layers, 40) << "the option length limit was never hit";
  }
  EXPECT_GT(layers, 5);
  EXPECT_EQ(prepared.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_THAT(prepared.error().ToString(), HasSubstr("parent layers"));
  EXPECT_THAT(prepared.error().ToString(), HasSubstr("one page"));
  // The failed Prepare left nothing: no row, no directory.
  auto failed_key = "layer" + std::to_string(layers) + "-active";
  EXPECT_EQ(snapshotter_->Stat(failed_key).error().code(), ErrorCode::kNotFound);
  auto cleaned = snapshotter_->Cleanup();
  ASSERT_TRUE(cleaned);
  EXPECT_TRUE(cleaned->empty());
  // A view of the same chain has no upperdir/workdir, so it may just fit; either way the
  // outcome is a mountable view or the same clean error.
  auto view = snapshotter_->View("view", parent, {});
  if (!view) {
    EXPECT_EQ(view.error().code(), ErrorCode::kResourceExhausted);
  } else {
    EXPECT_EQ((*view)[0].type, "overlay");
  }
}

TEST_F(OverlaySnapshotterTest, StaleDirectoryWithTheNextIdIsReplaced) {
  ASSERT_NO_FATAL_FAILURE(Open(dir_->path() / "root"));
  ASSERT_TRUE(snapshotter_->Prepare("first", "", {}));
  auto first_id = snapshotter_->IdForTest("first");
  ASSERT_TRUE(first_id);
  // What a crash between rename and commit leaves: a directory for an id the metadata lacks.
  const fs::path stale = snapshotter_->SnapshotDir(*first_id + 1);
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(stale / "fs" / "junk", "junk"));
  ASSERT_TRUE(snapshotter_->Prepare("second", "", {}));
  EXPECT_EQ(*snapshotter_->IdForTest("second"), *first_id + 1);
  EXPECT_TRUE(fs::is_empty(LayerDir("second")));
}

TEST_F(OverlaySnapshotterTest, OverlayAndNativeShareOneMetadataFile) {
  const fs::path db = dir_->path() / "shared.db";
  auto overlay = OverlaySnapshotter::Open(
      {{.root = dir_->path() / "overlay", .metadata_path = db, .sync = Durability::kNone}});
  ASSERT_TRUE(overlay) << overlay.error().ToString();
  auto native = NativeSnapshotter::Open(
      {{.root = dir_->path() / "native", .metadata_path = db, .sync = Durability::kNone}});
  ASSERT_TRUE(native) << native.error().ToString();
  // The same key in both namespaces.
  ASSERT_TRUE((*overlay)->Prepare("key", "", {{"who", "overlay"}}));
  ASSERT_TRUE((*native)->Prepare("key", "", {{"who", "native"}}));
  EXPECT_EQ((*overlay)->Stat("key")->labels.at("who"), "overlay");
  EXPECT_EQ((*native)->Stat("key")->labels.at("who"), "native");
  ASSERT_TRUE((*native)->Remove("key"));
  EXPECT_TRUE((*overlay)->Stat("key"));
  // Each Cleanup only knows its own root.
  auto cleaned = (*overlay)->Cleanup();
  ASSERT_TRUE(cleaned);
  EXPECT_TRUE(cleaned->empty());
}

TEST_F(OverlaySnapshotterTest, RelativeRootIsRejected) {
  auto opened = OverlaySnapshotter::Open({{.root = "relative/root"}});
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(OverlaySnapshotterTest, SyncModeSurvivesTheFullPath) {
  // With Durability::kLayer every step also syncs; the result must be the same.
  auto opened = OverlaySnapshotter::Open({{.root = dir_->path() / "root"}});
  ASSERT_TRUE(opened) << opened.error().ToString();
  snapshotter_ = std::move(*opened);
  ASSERT_TRUE(snapshotter_->Prepare("a", "", {}));
  ASSERT_NO_FATAL_FAILURE(WriteTestFile(fs::path(LayerDir("a")) / "f", "data"));
  ASSERT_TRUE(snapshotter_->Commit("committed", "a", {}));
  EXPECT_EQ(snapshotter_->Stat("committed")->kind, Kind::kCommitted);
  ASSERT_TRUE(snapshotter_->Remove("committed"));
}

}  // namespace
}  // namespace berth::snapshot
