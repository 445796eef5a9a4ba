#include "berth/metadata/metadata_db.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <set>

namespace berth::metadata {
namespace {

// The component name under which the image schema's version is kept in berth_schema.
constexpr std::string_view kComponent = "images";

// Never edit or reorder a migration that has shipped; append one.
constexpr std::array<sqlite::Migration, 1> kMigrations = {{
    {"image records",
     R"sql(
CREATE TABLE images (
  name TEXT PRIMARY KEY NOT NULL CHECK (name <> ''),
  target_media_type TEXT NOT NULL,
  target_digest TEXT NOT NULL,
  target_size INTEGER NOT NULL,
  image_id TEXT NOT NULL,
  chain_id TEXT NOT NULL,
  snapshotter TEXT NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}',
  created_ns INTEGER NOT NULL,
  updated_ns INTEGER NOT NULL
);
CREATE INDEX images_by_image_id ON images(image_id);
)sql"},
}};

// The lease tables' schema, versioned as its own component.
constexpr std::string_view kLeaseComponent = "leases";
constexpr std::array<sqlite::Migration, 1> kLeaseMigrations = {{
    {"pull leases",
     R"sql(
CREATE TABLE leases (
  id TEXT PRIMARY KEY NOT NULL CHECK (id <> ''),
  description TEXT NOT NULL,
  created_ns INTEGER NOT NULL,
  expires_ns INTEGER
);
CREATE TABLE lease_resources (
  lease_id TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('blob', 'snapshot', 'active')),
  key TEXT NOT NULL,
  PRIMARY KEY (lease_id, kind, key)
);
)sql"},
}};

int64_t ToNanos(std::chrono::system_clock::time_point time) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
}

std::chrono::system_clock::time_point FromNanos(int64_t nanos) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(nanos)));
}

std::string LabelsToJson(const Labels& labels) {
  nlohmann::json object = nlohmann::json::object();
  for (const auto& [key, value] : labels) object[key] = value;
  return object.dump();
}

Result<Labels> LabelsFromJson(std::string_view text, std::string_view name) {
  nlohmann::json object = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded() || !object.is_object()) {
    return Fail(ErrorCode::kDataLoss,
                fmt::format("image record {}: labels are not a JSON object", name));
  }
  Labels labels;
  for (const auto& [key, value] : object.items()) {
    if (!value.is_string()) {
      return Fail(ErrorCode::kDataLoss,
                  fmt::format("image record {}: label {} is not a string", name, key));
    }
    labels[key] = value.get<std::string>();
  }
  return labels;
}

constexpr std::string_view kSelectColumns =
    "SELECT name, target_media_type, target_digest, target_size, image_id, chain_id, snapshotter, "
    "labels, created_ns, updated_ns FROM images";

Result<ImageRecord> ReadRow(const sqlite::Statement& row) {
  ImageRecord record;
  record.name = row.ColumnText(0);
  record.target.media_type = row.ColumnText(1);
  BERTH_ASSIGN_OR_RETURN(record.target.digest,
                         WithContext(Digest::Parse(row.ColumnText(2)),
                                     fmt::format("image record {}: target digest", record.name)));
  record.target.size = row.ColumnInt64(3);
  BERTH_ASSIGN_OR_RETURN(record.image_id,
                         WithContext(Digest::Parse(row.ColumnText(4)),
                                     fmt::format("image record {}: image id", record.name)));
  record.chain_id = row.ColumnText(5);
  record.snapshotter = row.ColumnText(6);
  BERTH_ASSIGN_OR_RETURN(record.labels, LabelsFromJson(row.ColumnText(7), record.name));
  record.created = FromNanos(row.ColumnInt64(8));
  record.updated = FromNanos(row.ColumnInt64(9));
  return record;
}

}  // namespace

Result<std::unique_ptr<MetadataDb>> MetadataDb::Open(const MetadataOptions& options) {
  BERTH_ASSIGN_OR_RETURN(
      std::unique_ptr<sqlite::Database> db,
      sqlite::Database::Open(options.path, {.synchronous = options.synchronous}));
  BERTH_RETURN_IF_ERROR(sqlite::Migrate(*db, kComponent, kMigrations));
  BERTH_RETURN_IF_ERROR(sqlite::Migrate(*db, kLeaseComponent, kLeaseMigrations));
  return std::unique_ptr<MetadataDb>(new MetadataDb(std::move(db)));
}

Result<void> MetadataDb::PutImages(std::span<const ImageRecord> records) {
  std::set<std::string_view> names;
  for (const ImageRecord& record : records) {
    if (record.name.empty()) {
      return Fail(ErrorCode::kInvalidArgument, "image record with an empty name");
    }
    if (!names.insert(record.name).second) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("image record {} given twice in one write", record.name));
    }
  }
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement select_labels,
                         db_->Prepare("SELECT labels FROM images WHERE name = ?1"));
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement upsert,
      db_->Prepare(
          "INSERT INTO images(name, target_media_type, target_digest, target_size, "
          "image_id, chain_id, snapshotter, labels, created_ns, updated_ns) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9) "
          "ON CONFLICT(name) DO UPDATE SET target_media_type = excluded.target_media_type, "
          "target_digest = excluded.target_digest, target_size = excluded.target_size, "
          "image_id = excluded.image_id, chain_id = excluded.chain_id, "
          "snapshotter = excluded.snapshotter, labels = excluded.labels, "
          "updated_ns = excluded.updated_ns"));
  const int64_t now = ToNanos(std::chrono::system_clock::now());
  for (const ImageRecord& record : records) {
    Labels labels;
    select_labels.Reset();
    select_labels.Bind(1, record.name);
    BERTH_ASSIGN_OR_RETURN(bool exists, select_labels.Step());
    if (exists) {
      BERTH_ASSIGN_OR_RETURN(labels, LabelsFromJson(select_labels.ColumnText(0), record.name));
    }
    for (const auto& [key, value] : record.labels) labels[key] = value;
    upsert.Reset();
    upsert.Bind(1, record.name)
        .Bind(2, record.target.media_type)
        .Bind(3, record.target.digest.ToString())
        .Bind(4, record.target.size)
        .Bind(5, record.image_id.ToString())
        .Bind(6, record.chain_id)
        .Bind(7, record.snapshotter)
        .Bind(8, LabelsToJson(labels))
        .Bind(9, now);
    BERTH_RETURN_IF_ERROR(
        WithContext(upsert.Run(), fmt::format("write image record {}", record.name)));
  }
  return txn.Commit();
}

Result<int64_t> MetadataDb::DeleteImages(std::span<const std::string> names) {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement remove,
                         db_->Prepare("DELETE FROM images WHERE name = ?1"));
  int64_t deleted = 0;
  for (const std::string& name : names) {
    remove.Reset();
    remove.Bind(1, name);
    BERTH_RETURN_IF_ERROR(WithContext(remove.Run(), fmt::format("delete image record {}", name)));
    deleted += db_->Changes();
  }
  BERTH_RETURN_IF_ERROR(txn.Commit());
  return deleted;
}

Result<std::vector<ImageRecord>> MetadataDb::ListImages() {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement select,
                         db_->Prepare(fmt::format("{} ORDER BY name", kSelectColumns)));
  std::vector<ImageRecord> records;
  for (;;) {
    BERTH_ASSIGN_OR_RETURN(bool has_row, select.Step());
    if (!has_row) break;
    BERTH_ASSIGN_OR_RETURN(ImageRecord record, ReadRow(select));
    records.push_back(std::move(record));
  }
  return records;
}

Result<ImageRecord> MetadataDb::GetImage(std::string_view name) {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement select,
                         db_->Prepare(fmt::format("{} WHERE name = ?1", kSelectColumns)));
  select.Bind(1, name);
  BERTH_ASSIGN_OR_RETURN(bool has_row, select.Step());
  if (!has_row) return Fail(ErrorCode::kNotFound, fmt::format("no image record {}", name));
  return ReadRow(select);
}

std::string_view LeaseResourceKindName(LeaseResourceKind kind) {
  switch (kind) {
    case LeaseResourceKind::kBlob:
      return "blob";
    case LeaseResourceKind::kSnapshot:
      return "snapshot";
    case LeaseResourceKind::kActiveSnapshot:
      return "active";
  }
  return "blob";
}

namespace {

Result<LeaseResourceKind> ParseLeaseResourceKind(std::string_view name) {
  for (LeaseResourceKind kind : {LeaseResourceKind::kBlob, LeaseResourceKind::kSnapshot,
                                 LeaseResourceKind::kActiveSnapshot}) {
    if (LeaseResourceKindName(kind) == name) return kind;
  }
  return Fail(ErrorCode::kDataLoss, fmt::format("lease resource of unknown kind \"{}\"", name));
}

}  // namespace

Result<void> MetadataDb::CreateLease(std::string_view id, std::string_view description) {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement exists,
                         db_->Prepare("SELECT 1 FROM leases WHERE id = ?1"));
  exists.Bind(1, id);
  BERTH_ASSIGN_OR_RETURN(bool taken, exists.Step());
  if (taken) return Fail(ErrorCode::kAlreadyExists, fmt::format("lease {} exists", id));
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement insert,
      db_->Prepare("INSERT INTO leases(id, description, created_ns) VALUES (?1, ?2, ?3)"));
  insert.Bind(1, id).Bind(2, description).Bind(3, ToNanos(std::chrono::system_clock::now()));
  return WithContext(insert.Run(), fmt::format("create lease {}", id));
}

Result<void> MetadataDb::AddLeaseResources(std::string_view id,
                                           std::span<const LeaseResource> resources) {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement exists,
                         db_->Prepare("SELECT 1 FROM leases WHERE id = ?1"));
  exists.Bind(1, id);
  BERTH_ASSIGN_OR_RETURN(bool found, exists.Step());
  if (!found) return Fail(ErrorCode::kNotFound, fmt::format("no lease {}", id));
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement insert,
      db_->Prepare(
          "INSERT OR IGNORE INTO lease_resources(lease_id, kind, key) VALUES (?1, ?2, ?3)"));
  for (const LeaseResource& resource : resources) {
    insert.Reset();
    insert.Bind(1, id).Bind(2, LeaseResourceKindName(resource.kind)).Bind(3, resource.key);
    BERTH_RETURN_IF_ERROR(WithContext(insert.Run(), fmt::format("add to lease {}", id)));
  }
  return txn.Commit();
}

Result<void> MetadataDb::DeleteLease(std::string_view id) {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  for (std::string_view sql :
       {"DELETE FROM lease_resources WHERE lease_id = ?1", "DELETE FROM leases WHERE id = ?1"}) {
    BERTH_ASSIGN_OR_RETURN(sqlite::Statement remove, db_->Prepare(sql));
    remove.Bind(1, id);
    BERTH_RETURN_IF_ERROR(WithContext(remove.Run(), fmt::format("delete lease {}", id)));
  }
  return txn.Commit();
}

Result<int64_t> MetadataDb::ReleaseLeases(std::string_view id,
                                          std::chrono::system_clock::time_point expires) {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  // ?1 = '' selects every held lease.
  constexpr std::string_view kSelected =
      "(?1 = '' AND expires_ns IS NULL) OR (?1 <> '' AND id = ?1)";
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement drop_active,
      db_->Prepare(fmt::format("DELETE FROM lease_resources WHERE kind = 'active' AND lease_id IN "
                               "(SELECT id FROM leases WHERE {})",
                               kSelected)));
  drop_active.Bind(1, id);
  BERTH_RETURN_IF_ERROR(drop_active.Run());
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement expire,
      db_->Prepare(fmt::format("UPDATE leases SET expires_ns = ?2 WHERE {}", kSelected)));
  expire.Bind(1, id).Bind(2, ToNanos(expires));
  BERTH_RETURN_IF_ERROR(expire.Run());
  const int64_t released = db_->Changes();
  BERTH_RETURN_IF_ERROR(txn.Commit());
  return released;
}

Result<int64_t> MetadataDb::DeleteExpiredLeases(std::chrono::system_clock::time_point now) {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement drop_resources,
      db_->Prepare("DELETE FROM lease_resources WHERE lease_id IN "
                   "(SELECT id FROM leases WHERE expires_ns IS NOT NULL AND expires_ns <= ?1)"));
  drop_resources.Bind(1, ToNanos(now));
  BERTH_RETURN_IF_ERROR(drop_resources.Run());
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement drop_leases,
      db_->Prepare("DELETE FROM leases WHERE expires_ns IS NOT NULL AND expires_ns <= ?1"));
  drop_leases.Bind(1, ToNanos(now));
  BERTH_RETURN_IF_ERROR(drop_leases.Run());
  const int64_t deleted = db_->Changes();
  BERTH_RETURN_IF_ERROR(txn.Commit());
  return deleted;
}

Result<std::vector<LeaseRecord>> MetadataDb::ListLeases() {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement select_leases,
      db_->Prepare("SELECT id, description, created_ns, expires_ns FROM leases ORDER BY id"));
  std::vector<LeaseRecord> leases;
  std::map<std::string, size_t, std::less<>> by_id;
  for (;;) {
    BERTH_ASSIGN_OR_RETURN(bool has_row, select_leases.Step());
    if (!has_row) break;
    LeaseRecord lease{.id = select_leases.ColumnText(0),
                      .description = select_leases.ColumnText(1),
                      .created = FromNanos(select_leases.ColumnInt64(2))};
    if (!select_leases.ColumnIsNull(3)) lease.expires = FromNanos(select_leases.ColumnInt64(3));
    by_id[lease.id] = leases.size();
    leases.push_back(std::move(lease));
  }
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement select_resources,
      db_->Prepare("SELECT lease_id, kind, key FROM lease_resources ORDER BY lease_id, kind, key"));
  for (;;) {
    BERTH_ASSIGN_OR_RETURN(bool has_row, select_resources.Step());
    if (!has_row) break;
    auto lease = by_id.find(select_resources.ColumnText(0));
    if (lease == by_id.end()) continue;
    BERTH_ASSIGN_OR_RETURN(LeaseResourceKind kind,
                           ParseLeaseResourceKind(select_resources.ColumnText(1)));
    leases[lease->second].resources.push_back({kind, select_resources.ColumnText(2)});
  }
  for (LeaseRecord& lease : leases) std::sort(lease.resources.begin(), lease.resources.end());
  return leases;
}

}  // namespace berth::metadata
