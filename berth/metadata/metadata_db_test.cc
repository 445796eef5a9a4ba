#include "berth/metadata/metadata_db.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <thread>
#include <vector>

#include "berth/snapshot/native_snapshotter.h"
#include "testing/temp_dir.h"

namespace berth::metadata {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;

class MetadataDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = berth::testing::TempDir::Create("metadata");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
    db_ = Open();
    ASSERT_NE(db_, nullptr);
  }

  std::unique_ptr<MetadataDb> Open() {
    auto db = MetadataDb::Open({.path = dir_->path() / "metadata.db"});
    EXPECT_TRUE(db) << db.error().ToString();
    return db ? std::move(*db) : nullptr;
  }

  static ImageRecord Record(std::string name, std::string_view config, std::string chain = "c") {
    return {
        .name = std::move(name),
        .target = {.media_type = "application/vnd.oci.image.manifest.v1+json",
                   .digest = Digest::Sha256Of(std::string("manifest of ") + std::string(config)),
                   .size = 123},
        .image_id = Digest::Sha256Of(config),
        .chain_id = std::move(chain),
        .snapshotter = "overlayfs",
        .labels = {{std::string(kManagedLabel), std::string(kManagedValue)}}};
  }

  std::optional<berth::testing::TempDir> dir_;
  std::unique_ptr<MetadataDb> db_;
};

TEST_F(MetadataDbTest, PutThenGetAndList) {
  std::vector<ImageRecord> records = {Record("docker.io/library/a:1", "A"),
                                      Record("sha256:aaaa", "A")};
  ASSERT_TRUE(db_->PutImages(records));
  auto got = db_->GetImage("docker.io/library/a:1");
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(got->target, records[0].target);
  EXPECT_EQ(got->image_id, Digest::Sha256Of("A"));
  EXPECT_EQ(got->chain_id, "c");
  EXPECT_EQ(got->snapshotter, "overlayfs");
  EXPECT_EQ(got->labels.at(std::string(kManagedLabel)), "managed");
  EXPECT_EQ(got->created, got->updated);
  EXPECT_GT(got->created.time_since_epoch().count(), 0);

  auto all = db_->ListImages();
  ASSERT_TRUE(all);
  EXPECT_THAT(*all, ElementsAre(Field(&ImageRecord::name, "docker.io/library/a:1"),
                                Field(&ImageRecord::name, "sha256:aaaa")));
}

TEST_F(MetadataDbTest, GetMissingIsNotFound) {
  auto got = db_->GetImage("nope");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code(), ErrorCode::kNotFound);
}

TEST_F(MetadataDbTest, MovedTagUpdatesTargetKeepsCreatedAndMergesLabels) {
  ImageRecord first = Record("docker.io/library/a:latest", "A", "chainA");
  first.labels["user"] = "kept";
  ASSERT_TRUE(db_->PutImages(std::vector{first}));
  auto before = db_->GetImage(first.name);
  ASSERT_TRUE(before);
  std::this_thread::sleep_for(std::chrono::milliseconds(2));

  ImageRecord moved = Record("docker.io/library/a:latest", "B", "chainB");
  ASSERT_TRUE(db_->PutImages(std::vector{moved}));
  auto after = db_->GetImage(moved.name);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->image_id, Digest::Sha256Of("B"));
  EXPECT_EQ(after->target, moved.target);
  EXPECT_EQ(after->chain_id, "chainB");
  EXPECT_EQ(after->created, before->created);
  EXPECT_GT(after->updated, before->updated);
  EXPECT_EQ(after->labels.at("user"), "kept");
  EXPECT_EQ(after->labels.at(std::string(kManagedLabel)), "managed");
}

TEST_F(MetadataDbTest, PutIsAllOrNothing) {
  ASSERT_TRUE(db_->PutImages(std::vector{Record("x", "X")}));
  // The second record repeats a name: nothing of this write may land.
  std::vector<ImageRecord> bad = {Record("y", "Y"), Record("x", "Y"), Record("x", "Z")};
  auto put = db_->PutImages(bad);
  ASSERT_FALSE(put);
  EXPECT_EQ(put.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(db_->GetImage("y"));
  EXPECT_EQ(db_->GetImage("x")->image_id, Digest::Sha256Of("X"));

  std::vector<ImageRecord> empty_name = {Record("z", "Z"), Record("", "Z")};
  EXPECT_FALSE(db_->PutImages(empty_name));
  EXPECT_FALSE(db_->GetImage("z"));
}

TEST_F(MetadataDbTest, DeleteSkipsUnknownNames) {
  ASSERT_TRUE(db_->PutImages(std::vector{Record("a", "A"), Record("b", "B")}));
  std::vector<std::string> names = {"a", "unknown"};
  auto deleted = db_->DeleteImages(names);
  ASSERT_TRUE(deleted);
  EXPECT_EQ(*deleted, 1);
  EXPECT_FALSE(db_->GetImage("a"));
  EXPECT_TRUE(db_->GetImage("b"));
}

TEST_F(MetadataDbTest, ReopenKeepsRecords) {
  ASSERT_TRUE(db_->PutImages(std::vector{Record("a", "A"), Record("b", "B")}));
  auto before = db_->ListImages();
  ASSERT_TRUE(before);
  db_.reset();
  db_ = Open();
  ASSERT_NE(db_, nullptr);
  auto after = db_->ListImages();
  ASSERT_TRUE(after);
  EXPECT_EQ(*after, *before);
}

TEST_F(MetadataDbTest, SharesFileWithSnapshotter) {
  // The snapshotter and the image tables keep their schema versions side by side in
  // berth_schema; neither may be confused by the other, whichever opens the file first.
  db_.reset();
  auto snapshots = snapshot::NativeSnapshotter::Open(
      {{.root = dir_->path() / "snapshots", .metadata_path = dir_->path() / "metadata.db"}});
  ASSERT_TRUE(snapshots) << snapshots.error().ToString();
  db_ = Open();
  ASSERT_NE(db_, nullptr);
  ASSERT_TRUE(db_->PutImages(std::vector{Record("a", "A")}));
  auto prepared = (*snapshots)->Prepare("key", "", {});
  ASSERT_TRUE(prepared) << prepared.error().ToString();
  EXPECT_TRUE((*snapshots)->Stat("key"));
  EXPECT_TRUE(db_->GetImage("a"));
}

// A metadata.db as berth wrote it before every component's version moved to berth_schema: the
// image tables versioned there, the snapshotter's tables versioned in PRAGMA user_version. Both
// must open as they are, keeping their rows.
TEST_F(MetadataDbTest, OpensDatabaseWithSnapshotterVersionInUserVersion) {
  ASSERT_TRUE(db_->PutImages(std::vector{Record("a", "A")}));
  db_.reset();
  const std::filesystem::path path = dir_->path() / "metadata.db";
  {
    auto raw = sqlite::Database::Open(path);
    ASSERT_TRUE(raw) << raw.error().ToString();
    // The snapshotter's schema version 1, written the old way.
    ASSERT_TRUE((*raw)->Execute(R"sql(
CREATE TABLE snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  snapshotter TEXT NOT NULL,
  key TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
  parent_id INTEGER REFERENCES snapshots(id) ON DELETE RESTRICT,
  created_ns INTEGER NOT NULL,
  updated_ns INTEGER NOT NULL,
  size INTEGER,
  inodes INTEGER,
  UNIQUE (snapshotter, key)
);
CREATE INDEX snapshots_by_parent ON snapshots(parent_id);
CREATE TABLE snapshot_labels (
  snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (snapshot_id, name)
) WITHOUT ROWID;
PRAGMA user_version = 1;
)sql"));
  }
  auto snapshots = snapshot::NativeSnapshotter::Open(
      {{.root = dir_->path() / "snapshots", .metadata_path = path}});
  ASSERT_TRUE(snapshots) << snapshots.error().ToString();
  auto prepared = (*snapshots)->Prepare("key", "", {});
  ASSERT_TRUE(prepared) << prepared.error().ToString();
  db_ = Open();
  ASSERT_NE(db_, nullptr);
  EXPECT_TRUE(db_->GetImage("a"));
  auto raw = sqlite::Database::Open(path);
  ASSERT_TRUE(raw);
  EXPECT_EQ(*sqlite::SchemaVersion(**raw, "snapshots"), 1);
  EXPECT_EQ(*sqlite::SchemaVersion(**raw, "images"), 1);
}

TEST_F(MetadataDbTest, NewerSchemaIsRefused) {
  db_.reset();
  {
    auto raw = sqlite::Database::Open(dir_->path() / "metadata.db");
    ASSERT_TRUE(raw);
    ASSERT_TRUE((*raw)->Execute("UPDATE berth_schema SET version = 99 WHERE component = 'images'"));
  }
  auto db = MetadataDb::Open({.path = dir_->path() / "metadata.db"});
  ASSERT_FALSE(db);
  EXPECT_EQ(db.error().code(), ErrorCode::kFailedPrecondition);
}

using std::chrono::system_clock;

TEST_F(MetadataDbTest, LeaseKeepsItsResourcesAcrossReopen) {
  ASSERT_TRUE(db_->CreateLease("pull-1", "pull docker.io/library/a:1"));
  const std::vector<LeaseResource> resources = {{LeaseResourceKind::kBlob, "sha256:bb"},
                                                {LeaseResourceKind::kSnapshot, "sha256:cc"},
                                                {LeaseResourceKind::kActiveSnapshot, "extract-1"},
                                                {LeaseResourceKind::kBlob, "sha256:aa"}};
  ASSERT_TRUE(db_->AddLeaseResources("pull-1", resources));
  // Adding one again is harmless.
  ASSERT_TRUE(db_->AddLeaseResources("pull-1", std::vector<LeaseResource>{resources[0]}));
  db_ = Open();
  auto leases = db_->ListLeases();
  ASSERT_TRUE(leases) << leases.error().ToString();
  ASSERT_EQ(leases->size(), 1u);
  const LeaseRecord& lease = leases->front();
  EXPECT_EQ(lease.id, "pull-1");
  EXPECT_EQ(lease.description, "pull docker.io/library/a:1");
  EXPECT_FALSE(lease.expires.has_value());
  std::vector<LeaseResource> sorted = resources;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(lease.resources, sorted);
}

TEST_F(MetadataDbTest, LeaseIdsAreUniqueAndResourcesNeedALease) {
  ASSERT_TRUE(db_->CreateLease("pull-1", "x"));
  auto again = db_->CreateLease("pull-1", "y");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);
  auto orphan = db_->AddLeaseResources(
      "missing", std::vector<LeaseResource>{{LeaseResourceKind::kBlob, "sha256:aa"}});
  ASSERT_FALSE(orphan);
  EXPECT_EQ(orphan.error().code(), ErrorCode::kNotFound);
}

TEST_F(MetadataDbTest, ReleasingHeldLeasesDropsActiveSnapshotsAndSetsExpiry) {
  ASSERT_TRUE(db_->CreateLease("held-1", "a"));
  ASSERT_TRUE(db_->CreateLease("held-2", "b"));
  ASSERT_TRUE(db_->AddLeaseResources(
      "held-1", std::vector<LeaseResource>{{LeaseResourceKind::kBlob, "sha256:aa"},
                                           {LeaseResourceKind::kActiveSnapshot, "extract-1"}}));
  const auto expiry = system_clock::now() + std::chrono::hours(1);
  auto released = db_->ReleaseLeases("", expiry);
  ASSERT_TRUE(released) << released.error().ToString();
  EXPECT_EQ(*released, 2);
  // Already released: a second release-all finds none held.
  EXPECT_EQ(*db_->ReleaseLeases("", expiry), 0);
  auto leases = db_->ListLeases();
  ASSERT_TRUE(leases);
  ASSERT_EQ(leases->size(), 2u);
  ASSERT_TRUE((*leases)[0].expires.has_value());
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(
                (*leases)[0].expires->time_since_epoch()),
            std::chrono::duration_cast<std::chrono::milliseconds>(expiry.time_since_epoch()));
  EXPECT_THAT((*leases)[0].resources,
              ElementsAre(LeaseResource{LeaseResourceKind::kBlob, "sha256:aa"}));
}

TEST_F(MetadataDbTest, ReleaseOneLeaseAndDeleteExpired) {
  ASSERT_TRUE(db_->CreateLease("a", "a"));
  ASSERT_TRUE(db_->CreateLease("b", "b"));
  const auto now = system_clock::now();
  EXPECT_EQ(*db_->ReleaseLeases("a", now - std::chrono::seconds(1)), 1);
  auto deleted = db_->DeleteExpiredLeases(now);
  ASSERT_TRUE(deleted) << deleted.error().ToString();
  EXPECT_EQ(*deleted, 1);
  auto leases = db_->ListLeases();
  ASSERT_TRUE(leases);
  ASSERT_EQ(leases->size(), 1u);
  EXPECT_EQ(leases->front().id, "b");  // held leases never expire
  ASSERT_TRUE(db_->DeleteLease("b"));
  ASSERT_TRUE(db_->DeleteLease("b"));  // idempotent
  EXPECT_TRUE(db_->ListLeases()->empty());
}

}  // namespace
}  // namespace berth::metadata
