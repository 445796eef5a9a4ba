#include "berth/gc/collector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <optional>

#include "berth/image/manifest.h"
#include "berth/snapshot/native_snapshotter.h"
#include "berth/unpack/unpacker.h"
#include "testing/temp_dir.h"
#include "tools/imagegen/file_tree.h"
#include "tools/imagegen/image.h"
#include "tools/imagegen/layer.h"

namespace berth::gc {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::IsEmpty;

imagegen::Layer MakeLayer(std::string_view file, std::string_view content) {
  imagegen::FileTree tree;
  tree.AddFile(std::string(file), std::string(content));
  auto layer = imagegen::BuildLayer(tree);
  EXPECT_TRUE(layer) << layer.error().ToString();
  return std::move(*layer);
}

// Two images sharing their base layer: A = base + a, B = base + b.
imagegen::Image MakeImage(std::string_view own) {
  std::vector<imagegen::Layer> layers;
  layers.push_back(MakeLayer("base.txt", "shared base\n"));
  layers.push_back(MakeLayer(std::string(own) + ".txt", std::string(own) + "\n"));
  auto image = imagegen::AssembleImage({}, std::move(layers));
  EXPECT_TRUE(image) << image.error().ToString();
  return std::move(*image);
}

class CollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = berth::testing::TempDir::Create("gc");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
    auto store =
        content::Store::Open({.root = dir_->path() / "content", .durability = Durability::kNone});
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    auto snapshotter =
        snapshot::NativeSnapshotter::Open({{.root = dir_->path() / "snapshots",
                                            .metadata_path = dir_->path() / "metadata.db",
                                            .sync = Durability::kNone}});
    ASSERT_TRUE(snapshotter) << snapshotter.error().ToString();
    snapshotter_ = std::move(*snapshotter);
    auto db = metadata::MetadataDb::Open({.path = dir_->path() / "metadata.db"});
    ASSERT_TRUE(db) << db.error().ToString();
    db_ = std::move(*db);
  }

  // Stores the image's blobs, unpacks it and names it `name`; returns the chain IDs.
  std::vector<std::string> Install(const imagegen::Image& image, const std::string& name) {
    EXPECT_TRUE(store_->WriteBlob(image.manifest.digest, image.manifest_json));
    EXPECT_TRUE(store_->WriteBlob(image.config.digest, image.config_json));
    for (const imagegen::Layer& layer : image.layers) {
      EXPECT_TRUE(store_->WriteBlob(layer.blob.digest, layer.bytes));
    }
    auto manifest = image::ParseManifest(image.manifest_json);
    auto config = image::ParseImageConfig(image.config_json);
    EXPECT_TRUE(manifest && config);
    auto top = unpack::UnpackImage(*store_, *snapshotter_, threads_, *manifest, *config,
                                   {.preserve_ownership = false});
    EXPECT_TRUE(top) << top.error().ToString();
    std::vector<metadata::ImageRecord> records = {
        {.name = name,
         .target = {.media_type = image.manifest.media_type,
                    .digest = image.manifest.digest,
                    .size = image.manifest.size},
         .image_id = image.config.digest,
         .chain_id = top->ToString(),
         .snapshotter = "native"}};
    EXPECT_TRUE(db_->PutImages(records));
    std::vector<std::string> chain;
    for (const Digest& id : image::ChainIds(config->diff_ids)) chain.push_back(id.ToString());
    return chain;
  }

  CollectReport Run(CollectOptions options = {}) {
    auto report = Collect(*store_, *snapshotter_, *snapshotter_, *db_, options);
    EXPECT_TRUE(report) << report.error().ToString();
    return report ? std::move(*report) : CollectReport{};
  }

  std::optional<berth::testing::TempDir> dir_;
  std::unique_ptr<content::Store> store_;
  unpack::LayerThreadBudget threads_;
  std::unique_ptr<snapshot::NativeSnapshotter> snapshotter_;
  std::unique_ptr<metadata::MetadataDb> db_;
};

TEST_F(CollectorTest, NamedImagesAreKept) {
  imagegen::Image a = MakeImage("a");
  std::vector<std::string> chain = Install(a, "example.com/a:1");
  CollectReport report = Run();
  EXPECT_THAT(report.removed, IsEmpty());
  EXPECT_THAT(report.warnings, IsEmpty());
  EXPECT_TRUE(store_->Contains(a.manifest.digest));
  EXPECT_TRUE(store_->Contains(a.config.digest));
  EXPECT_TRUE(store_->Contains(a.layers[1].blob.digest));
  EXPECT_TRUE(snapshotter_->Stat(chain.back()));
}

TEST_F(CollectorTest, UnnamedImageIsFreedButSharedLayersStay) {
  imagegen::Image a = MakeImage("a");
  imagegen::Image b = MakeImage("b");
  std::vector<std::string> chain_a = Install(a, "example.com/a:1");
  std::vector<std::string> chain_b = Install(b, "example.com/b:1");
  ASSERT_EQ(chain_a.front(), chain_b.front());
  ASSERT_EQ(*db_->DeleteImages(std::vector<std::string>{"example.com/a:1"}), 1);

  auto top_usage = snapshotter_->GetUsage(chain_a.back());
  ASSERT_TRUE(top_usage);
  // Freed bytes are disk bytes, as du counts them.
  int64_t a_blob_disk_bytes = 0;
  for (const Digest& digest : {a.manifest.digest, a.config.digest, a.layers[1].blob.digest}) {
    struct stat st {};
    // The store's documented layout: <root>/blobs/<algorithm>/<hex>.
    ASSERT_EQ(
        ::stat((dir_->path() / "content" / "blobs" / "sha256" / digest.encoded()).c_str(), &st), 0);
    a_blob_disk_bytes += static_cast<int64_t>(st.st_blocks) * 512;
  }
  CollectReport report = Run();
  // A's manifest, config and own layer go; the base layer blob and snapshot are B's too.
  EXPECT_EQ(report.blobs.count, 3);
  EXPECT_EQ(report.blobs.bytes, a_blob_disk_bytes);
  EXPECT_EQ(report.snapshots.count, 1);
  EXPECT_EQ(report.snapshots.bytes, top_usage->size);
  EXPECT_FALSE(store_->Contains(a.manifest.digest));
  EXPECT_FALSE(store_->Contains(a.layers[1].blob.digest));
  EXPECT_TRUE(store_->Contains(a.layers[0].blob.digest));
  EXPECT_FALSE(snapshotter_->Stat(chain_a.back()));
  EXPECT_TRUE(snapshotter_->Stat(chain_b.front()));
  EXPECT_TRUE(snapshotter_->Stat(chain_b.back()));
  // A second run finds nothing more.
  EXPECT_THAT(Run().removed, IsEmpty());
}

TEST_F(CollectorTest, DryRunRemovesNothing) {
  imagegen::Image a = MakeImage("a");
  std::vector<std::string> chain = Install(a, "example.com/a:1");
  ASSERT_TRUE(db_->DeleteImages(std::vector<std::string>{"example.com/a:1"}));
  CollectReport dry = Run({.dry_run = true});
  EXPECT_EQ(dry.blobs.count, 4);
  EXPECT_EQ(dry.snapshots.count, 2);
  EXPECT_TRUE(store_->Contains(a.manifest.digest));
  EXPECT_TRUE(snapshotter_->Stat(chain.front()));
  CollectReport real = Run();
  EXPECT_EQ(real.removed, dry.removed);
  EXPECT_FALSE(snapshotter_->Stat(chain.front()));
}

TEST_F(CollectorTest, LiveLeaseKeepsWhatItHoldsAndExpiredLeaseDoesNot) {
  imagegen::Image a = MakeImage("a");
  std::vector<std::string> chain = Install(a, "example.com/a:1");
  ASSERT_TRUE(db_->DeleteImages(std::vector<std::string>{"example.com/a:1"}));
  ASSERT_TRUE(db_->CreateLease("pull-1", "pull example.com/a:1"));
  std::vector<metadata::LeaseResource> held = {
      {metadata::LeaseResourceKind::kBlob, a.layers[1].blob.digest.ToString()},
      {metadata::LeaseResourceKind::kSnapshot, chain.back()}};
  ASSERT_TRUE(db_->AddLeaseResources("pull-1", held));

  CollectReport report = Run();
  EXPECT_TRUE(store_->Contains(a.layers[1].blob.digest));
  EXPECT_FALSE(store_->Contains(a.manifest.digest));
  // The held top snapshot keeps its parent.
  EXPECT_TRUE(snapshotter_->Stat(chain.back()));
  EXPECT_TRUE(snapshotter_->Stat(chain.front()));
  EXPECT_EQ(report.snapshots.count, 0);

  // Released with an expiry in the past: the next collection drops the lease and its content.
  ASSERT_TRUE(db_->ReleaseLeases("pull-1", std::chrono::system_clock::now()));
  CollectReport after = Run();
  EXPECT_EQ(after.expired_leases, 1);
  EXPECT_FALSE(store_->Contains(a.layers[1].blob.digest));
  EXPECT_FALSE(snapshotter_->Stat(chain.front()));
  EXPECT_TRUE(db_->ListLeases()->empty());
}

TEST_F(CollectorTest, MountsAreRootsAndUnpackScratchIsNot) {
  imagegen::Image a = MakeImage("a");
  std::vector<std::string> chain = Install(a, "example.com/a:1");
  ASSERT_TRUE(db_->DeleteImages(std::vector<std::string>{"example.com/a:1"}));
  ASSERT_TRUE(snapshotter_->Prepare("mount-/mnt/x", chain.back(), {}));
  const std::string scratch = std::string(snapshot::kUnpackScratchPrefix) + "0000-sha256:aa";
  ASSERT_TRUE(snapshotter_->Prepare(scratch, "", {}));

  CollectReport report = Run();
  EXPECT_THAT(report.removed, Contains("snapshot " + scratch + " (active)"));
  EXPECT_FALSE(snapshotter_->Stat(scratch));
  EXPECT_TRUE(snapshotter_->Stat("mount-/mnt/x"));
  EXPECT_TRUE(snapshotter_->Stat(chain.back()));
  EXPECT_TRUE(snapshotter_->Stat(chain.front()));
}

TEST_F(CollectorTest, ContainerdOwnedSnapshotsAreKeptWithoutAnyReference) {
  // What berthd's containerd Snapshots API stores for containerd's namespaced keys: a committed
  // chain (its top has no child), an unpack's active snapshot and a container's.
  const std::string prefix(snapshot::kContainerdKeyPrefix);
  const std::string base = prefix + "default/1/sha256:base";
  const std::string top = prefix + "default/3/sha256:top";
  const std::string extract = prefix + "default/4/extract-1234-abcd sha256:next";
  const std::string container = prefix + "default/5/container-1";
  ASSERT_TRUE(snapshotter_->Prepare(prefix + "default/0/extract-1 sha256:base", "", {}));
  ASSERT_TRUE(snapshotter_->Commit(base, prefix + "default/0/extract-1 sha256:base", {}));
  ASSERT_TRUE(snapshotter_->Prepare(prefix + "default/2/extract-2 sha256:top", base, {}));
  ASSERT_TRUE(snapshotter_->Commit(top, prefix + "default/2/extract-2 sha256:top", {}));
  ASSERT_TRUE(snapshotter_->Prepare(extract, "", {}));
  ASSERT_TRUE(snapshotter_->Prepare(container, base, {}));
  // berth's own unreferenced snapshots beside them are collected, so the collection ran.
  ASSERT_TRUE(snapshotter_->Prepare("extract-9-sha256:mine", "", {}));
  ASSERT_TRUE(snapshotter_->Commit("sha256:mine", "extract-9-sha256:mine", {}));

  CollectReport report = Run();
  EXPECT_EQ(report.snapshots.count, 1);
  EXPECT_THAT(report.removed, Contains("snapshot sha256:mine (committed)"));
  EXPECT_FALSE(snapshotter_->Stat("sha256:mine"));
  for (const std::string& key : {base, top, extract, container}) {
    EXPECT_TRUE(snapshotter_->Stat(key)) << key;
  }
  EXPECT_THAT(Run().removed, IsEmpty());
}

TEST_F(CollectorTest, IngestsAreKeptOnlyWhenHeldOrInUse) {
  imagegen::Image a = MakeImage("a");
  const imagegen::Layer& layer = a.layers[1];
  {
    auto writer = store_->OpenWriter("pull-held", layer.blob.digest, layer.blob.size);
    ASSERT_TRUE(writer);
    ASSERT_TRUE((*writer)->Write(std::string_view(layer.bytes).substr(0, 10)));
  }
  const Digest other = Digest::Sha256Of("other");
  {
    auto writer = store_->OpenWriter("pull-stray", other, 100);
    ASSERT_TRUE(writer);
    ASSERT_TRUE((*writer)->Write("0123456789abc"));
  }
  ASSERT_TRUE(db_->CreateLease("pull-1", "x"));
  ASSERT_TRUE(db_->AddLeaseResources(
      "pull-1", std::vector<metadata::LeaseResource>{
                    {metadata::LeaseResourceKind::kBlob, layer.blob.digest.ToString()}}));
  // A third ingest, unheld but open in a writer right now: in use, so kept.
  const Digest busy = Digest::Sha256Of("busy");
  auto busy_writer = store_->OpenWriter("pull-busy", busy, 100);
  ASSERT_TRUE(busy_writer);

  CollectReport report = Run();
  EXPECT_EQ(report.ingests.count, 1);
  EXPECT_EQ(report.ingests.bytes, 13);
  auto ingests = store_->ListIngests();
  ASSERT_TRUE(ingests);
  std::vector<std::string> refs;
  for (const auto& ingest : *ingests) refs.push_back(ingest.ref);
  EXPECT_THAT(refs, ::testing::UnorderedElementsAre("pull-held", "pull-busy"));
}

TEST_F(CollectorTest, DirectoriesNoSnapshotOwnsAreRemoved) {
  const fs::path stray = dir_->path() / "snapshots" / "snapshots" / "new-leftover";
  fs::create_directories(stray / "fs");
  auto found = snapshotter_->FindOrphans();
  ASSERT_TRUE(found);
  EXPECT_THAT(*found, Contains(stray));
  CollectReport report = Run();
  EXPECT_EQ(report.orphan_directories.count, 1);
  EXPECT_FALSE(fs::exists(stray));
}

TEST_F(CollectorTest, SnapshotWhoseDirectoryVanishedIsReportedMissing) {
  imagegen::Image a = MakeImage("a");
  std::vector<std::string> chain = Install(a, "example.com/a:1");
  auto id = snapshotter_->IdForTest(chain.back());
  ASSERT_TRUE(id);
  fs::remove_all(snapshotter_->SnapshotDir(*id));
  auto missing = snapshotter_->FindMissing();
  ASSERT_TRUE(missing);
  EXPECT_THAT(*missing, ::testing::ElementsAre(chain.back()));
}

TEST_F(CollectorTest, DiscardUnpackedLayersDropsLayerBlobsButKeepsTheImage) {
  imagegen::Image a = MakeImage("a");
  std::vector<std::string> chain = Install(a, "example.com/a:1");
  // A layer held by a running pull's lease keeps its blob regardless.
  ASSERT_TRUE(db_->CreateLease("pull-1", "x"));
  ASSERT_TRUE(db_->AddLeaseResources(
      "pull-1", std::vector<metadata::LeaseResource>{
                    {metadata::LeaseResourceKind::kBlob, a.layers[1].blob.digest.ToString()}}));

  CollectReport report = Run({.discard_unpacked_layers = true});
  EXPECT_EQ(report.blobs.count, 1);
  EXPECT_FALSE(store_->Contains(a.layers[0].blob.digest));
  EXPECT_TRUE(store_->Contains(a.layers[1].blob.digest));
  EXPECT_TRUE(store_->Contains(a.manifest.digest));
  EXPECT_TRUE(store_->Contains(a.config.digest));
  EXPECT_TRUE(snapshotter_->Stat(chain.front()));
  EXPECT_TRUE(snapshotter_->Stat(chain.back()));
  // Without the option, nothing named is garbage.
  ASSERT_TRUE(db_->DeleteLease("pull-1"));
  EXPECT_EQ(Run().blobs.count, 0);
}

}  // namespace
}  // namespace berth::gc
