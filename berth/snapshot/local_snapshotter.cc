#include "berth/snapshot/local_snapshotter.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <set>

#include "berth/base/file_util.h"
#include "berth/snapshot/tree_util.h"

namespace berth::snapshot {
namespace {

namespace fs = std::filesystem;

constexpr std::array<sqlite::Migration, 1> kMigrations = {{
    {"snapshots and labels", R"sql(
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
)sql"},
}};

constexpr std::string_view kSelectRow =
    "SELECT s.id, s.key, s.kind, s.parent_id, p.key, s.created_ns, s.updated_ns, s.size, "
    "s.inodes FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id ";

std::optional<Kind> ParseKind(std::string_view text) {
  if (text == "active") return Kind::kActive;
  if (text == "view") return Kind::kView;
  if (text == "committed") return Kind::kCommitted;
  return std::nullopt;
}

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::chrono::system_clock::time_point FromNanos(int64_t nanos) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(nanos)));
}

Result<void> CheckName(std::string_view what, std::string_view value) {
  if (value.empty()) {
    return Fail(ErrorCode::kInvalidArgument, fmt::format("snapshot {} must not be empty", what));
  }
  return Ok();
}

// Removes a directory it owns on every path unless dismissed.
class DirectoryGuard {
 public:
  explicit DirectoryGuard(fs::path path) : path_(std::move(path)) {}
  ~DirectoryGuard() {
    if (!path_.empty()) (void)RemoveTree(path_);
  }
  void Reset(fs::path path) { path_ = std::move(path); }
  void Dismiss() { path_.clear(); }

 private:
  fs::path path_;
};

}  // namespace

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kView:
      return "view";
    case Kind::kActive:
      return "active";
    case Kind::kCommitted:
      return "committed";
  }
  return "unknown";
}

struct LocalSnapshotter::Row {
  int64_t id = 0;
  std::string key;
  Kind kind = Kind::kActive;
  std::optional<int64_t> parent_id;
  std::string parent_key;
  int64_t created_ns = 0;
  int64_t updated_ns = 0;
  std::optional<int64_t> size;
  std::optional<int64_t> inodes;
};

LocalSnapshotter::LocalSnapshotter(std::string type, LocalSnapshotterOptions options)
    : type_(std::move(type)), options_(std::move(options)) {}

LocalSnapshotter::~LocalSnapshotter() = default;

Result<void> LocalSnapshotter::Initialize() {
  if (options_.root.empty() || !options_.root.is_absolute()) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("snapshotter root must be an absolute path, got \"{}\"",
                            options_.root.string()));
  }
  BERTH_RETURN_IF_ERROR(MakeDirectories(options_.root / "snapshots"));
  fs::path lock_path = options_.root / "lock";
  lock_fd_.reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock_fd_) return Fail(ErrnoError(errno, fmt::format("open {}", lock_path.string())));
  if (::flock(lock_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Fail(ErrorCode::kUnavailable,
                  fmt::format("snapshotter root {} is in use by another snapshotter (lock {} is "
                              "held); stop the other berthd or close the other snapshotter",
                              options_.root.string(), lock_path.string()));
    }
    return Fail(ErrnoError(errno, fmt::format("lock {}", lock_path.string())));
  }
  fs::path db_path =
      options_.metadata_path.empty() ? options_.root / "metadata.db" : options_.metadata_path;
  BERTH_ASSIGN_OR_RETURN(
      db_, sqlite::Database::Open(db_path, {.synchronous = options_.sync != Durability::kNone
                                                               ? sqlite::Synchronous::kFull
                                                               : sqlite::Synchronous::kNormal}));
  BERTH_RETURN_IF_ERROR(
      sqlite::Migrate(*db_, "snapshots", kMigrations, sqlite::LegacyVersion::kUserVersion));
  return FinishInterruptedCommits();
}

fs::path LocalSnapshotter::SnapshotDir(int64_t id) const {
  return options_.root / "snapshots" / std::to_string(id);
}

void LocalSnapshotter::CrashPoint(std::string_view point) const {
  if (options_.crash_point_for_test) options_.crash_point_for_test(point);
}

Result<std::optional<LocalSnapshotter::Row>> LocalSnapshotter::FindRow(std::string_view key) {
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement query,
      db_->Prepare(std::string(kSelectRow) + "WHERE s.snapshotter = ?1 AND s.key = ?2"));
  query.Bind(1, type_).Bind(2, key);
  BERTH_ASSIGN_OR_RETURN(bool found, query.Step());
  if (!found) return std::optional<Row>();
  Row row;
  row.id = query.ColumnInt64(0);
  row.key = query.ColumnText(1);
  std::optional<Kind> kind = ParseKind(query.ColumnText(2));
  if (!kind) {
    return Fail(ErrorCode::kDataLoss,
                fmt::format("snapshot {} has unknown kind \"{}\" in {}", row.key,
                            query.ColumnText(2), db_->path().string()));
  }
  row.kind = *kind;
  row.parent_id = query.ColumnOptionalInt64(3);
  row.parent_key = query.ColumnText(4);
  row.created_ns = query.ColumnInt64(5);
  row.updated_ns = query.ColumnInt64(6);
  row.size = query.ColumnOptionalInt64(7);
  row.inodes = query.ColumnOptionalInt64(8);
  return std::optional<Row>(std::move(row));
}

Result<LocalSnapshotter::Row> LocalSnapshotter::GetRow(std::string_view key) {
  BERTH_ASSIGN_OR_RETURN(std::optional<Row> row, FindRow(key));
  if (!row) {
    return Fail(ErrorCode::kNotFound, fmt::format("snapshot {} does not exist", key));
  }
  return std::move(*row);
}

Result<std::vector<int64_t>> LocalSnapshotter::ParentChain(int64_t id) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement query, db_->Prepare(R"sql(
WITH RECURSIVE chain(id, parent_id, depth) AS (
  SELECT id, parent_id, 0 FROM snapshots WHERE id = ?1
  UNION ALL
  SELECT s.id, s.parent_id, chain.depth + 1 FROM snapshots s JOIN chain ON s.id = chain.parent_id
)
SELECT id FROM chain WHERE depth > 0 ORDER BY depth)sql"));
  query.Bind(1, id);
  std::vector<int64_t> chain;
  while (true) {
    BERTH_ASSIGN_OR_RETURN(bool has_row, query.Step());
    if (!has_row) break;
    chain.push_back(query.ColumnInt64(0));
  }
  return chain;
}

Result<Labels> LocalSnapshotter::LoadLabels(int64_t id) {
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement query,
      db_->Prepare("SELECT name, value FROM snapshot_labels WHERE snapshot_id = ?1"));
  query.Bind(1, id);
  Labels labels;
  while (true) {
    BERTH_ASSIGN_OR_RETURN(bool has_row, query.Step());
    if (!has_row) break;
    labels.emplace(query.ColumnText(0), query.ColumnText(1));
  }
  return labels;
}

Result<void> LocalSnapshotter::StoreLabels(int64_t id, const Labels& labels) {
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement clear,
                         db_->Prepare("DELETE FROM snapshot_labels WHERE snapshot_id = ?1"));
  clear.Bind(1, id);
  BERTH_RETURN_IF_ERROR(clear.Run());
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement insert,
      db_->Prepare("INSERT INTO snapshot_labels(snapshot_id, name, value) VALUES (?1, ?2, ?3)"));
  for (const auto& [name, value] : labels) {
    if (name.empty()) {
      return Fail(ErrorCode::kInvalidArgument, "snapshot label names must not be empty");
    }
    insert.Reset();
    insert.Bind(1, id).Bind(2, name).Bind(3, value);
    BERTH_RETURN_IF_ERROR(insert.Run());
  }
  return Ok();
}

Result<Info> LocalSnapshotter::ToInfo(const Row& row) {
  Info info;
  info.kind = row.kind;
  info.name = row.key;
  info.parent = row.parent_key;
  BERTH_ASSIGN_OR_RETURN(info.labels, LoadLabels(row.id));
  info.created = FromNanos(row.created_ns);
  info.updated = FromNanos(row.updated_ns);
  return info;
}

Result<std::vector<Mount>> LocalSnapshotter::Prepare(std::string_view key, std::string_view parent,
                                                     const Labels& labels) {
  return WithContext(Create(Kind::kActive, key, parent, labels),
                     fmt::format("prepare snapshot {}", key));
}

Result<std::vector<Mount>> LocalSnapshotter::View(std::string_view key, std::string_view parent,
                                                  const Labels& labels) {
  return WithContext(Create(Kind::kView, key, parent, labels),
                     fmt::format("view snapshot {}", key));
}

Result<std::vector<Mount>> LocalSnapshotter::Create(Kind kind, std::string_view key,
                                                    std::string_view parent, const Labels& labels) {
  BERTH_RETURN_IF_ERROR(CheckName("key", key));
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  BERTH_ASSIGN_OR_RETURN(std::optional<Row> existing, FindRow(key));
  if (existing) {
    return Fail(ErrorCode::kAlreadyExists,
                fmt::format("snapshot {} already exists ({}); remove it or use another key", key,
                            KindName(existing->kind)));
  }
  Snapshot snapshot{.key = std::string(key), .kind = kind};
  std::optional<int64_t> parent_id;
  if (!parent.empty()) {
    BERTH_ASSIGN_OR_RETURN(std::optional<Row> parent_row, FindRow(parent));
    if (!parent_row) {
      return Fail(ErrorCode::kNotFound, fmt::format("parent snapshot {} does not exist", parent));
    }
    if (parent_row->kind != Kind::kCommitted) {
      return Fail(ErrorCode::kFailedPrecondition,
                  fmt::format("parent snapshot {} is {}, not committed; commit it first", parent,
                              KindName(parent_row->kind)));
    }
    parent_id = parent_row->id;
    snapshot.parent_ids.push_back(parent_row->id);
    BERTH_ASSIGN_OR_RETURN(std::vector<int64_t> ancestors, ParentChain(parent_row->id));
    snapshot.parent_ids.insert(snapshot.parent_ids.end(), ancestors.begin(), ancestors.end());
  }

  const int64_t now = NowNanos();
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement insert,
      db_->Prepare(
          "INSERT INTO snapshots(snapshotter, key, kind, parent_id, created_ns, updated_ns) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?5)"));
  insert.Bind(1, type_).Bind(2, key).Bind(3, KindName(kind)).Bind(4, parent_id).Bind(5, now);
  BERTH_RETURN_IF_ERROR(insert.Run());
  snapshot.id = db_->LastInsertRowId();
  BERTH_RETURN_IF_ERROR(StoreLabels(snapshot.id, labels));
  // Work out the mounts before anything is final, so a chain too long to mount fails cleanly.
  BERTH_ASSIGN_OR_RETURN(std::vector<Mount> mounts, MountsFor(snapshot));

  std::string temp_template = (options_.root / "snapshots" / "new-XXXXXX").string();
  if (::mkdtemp(temp_template.data()) == nullptr) {
    return Fail(ErrnoError(errno, fmt::format("create {}", temp_template)));
  }
  fs::path temp(temp_template);
  DirectoryGuard guard(temp);
  BERTH_RETURN_IF_ERROR(PopulateDirectory(temp, snapshot));

  fs::path final_dir = SnapshotDir(snapshot.id);
  // An existing directory with this id is crash garbage: the id is not in the metadata and we
  // hold the write lock. Replace it.
  BERTH_RETURN_IF_ERROR(RemoveTree(final_dir));
  if (::rename(temp.c_str(), final_dir.c_str()) != 0) {
    return Fail(
        ErrnoError(errno, fmt::format("rename {} to {}", temp.string(), final_dir.string())));
  }
  guard.Reset(final_dir);
  if (options_.sync != Durability::kNone) {
    // The copied tree (native) and the rename must be durable before the row is.
    BERTH_RETURN_IF_ERROR(SyncFilesystem(final_dir));
    BERTH_RETURN_IF_ERROR(SyncDirectory(options_.root / "snapshots"));
  }
  BERTH_RETURN_IF_ERROR(AcquireMounts(snapshot));
  CrashPoint("prepare:before-commit");
  if (auto committed = txn.Commit(); !committed) {
    ReleaseMounts(snapshot);
    return Fail(std::move(committed).error());
  }
  guard.Dismiss();
  return mounts;
}

Result<std::vector<Mount>> LocalSnapshotter::Mounts(std::string_view key) {
  std::lock_guard lock(mutex_);
  auto mounts = [&]() -> Result<std::vector<Mount>> {
    BERTH_ASSIGN_OR_RETURN(Row row, GetRow(key));
    if (row.kind == Kind::kCommitted) {
      return Fail(ErrorCode::kFailedPrecondition,
                  fmt::format("snapshot {} is committed and cannot be mounted directly; create a "
                              "View or Prepare a child of it",
                              key));
    }
    Snapshot snapshot{.id = row.id, .key = row.key, .kind = row.kind};
    BERTH_ASSIGN_OR_RETURN(snapshot.parent_ids, ParentChain(row.id));
    return MountsFor(snapshot);
  }();
  return WithContext(std::move(mounts), fmt::format("mounts of snapshot {}", key));
}

Result<void> LocalSnapshotter::Commit(std::string_view name, std::string_view key,
                                      const Labels& labels) {
  return WithContext(CommitImpl(name, key, std::nullopt, labels),
                     fmt::format("commit snapshot {} as {}", key, name));
}

Result<void> LocalSnapshotter::CommitRebased(std::string_view name, std::string_view key,
                                             std::string_view parent, const Labels& labels) {
  return WithContext(CommitImpl(name, key, parent, labels),
                     fmt::format("commit snapshot {} as {} on top of {}", key, name,
                                 parent.empty() ? "nothing" : parent));
}

Result<void> LocalSnapshotter::CommitImpl(std::string_view name, std::string_view key,
                                          std::optional<std::string_view> parent,
                                          const Labels& labels) {
  auto committed = [&]() -> Result<void> {
    BERTH_RETURN_IF_ERROR(CheckName("name", name));
    BERTH_RETURN_IF_ERROR(CheckName("key", key));
    std::lock_guard lock(mutex_);
    BERTH_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
    BERTH_ASSIGN_OR_RETURN(Row row, GetRow(key));
    if (row.kind != Kind::kActive) {
      return Fail(ErrorCode::kFailedPrecondition,
                  fmt::format("snapshot {} is {}; only active snapshots can be committed", key,
                              KindName(row.kind)));
    }
    BERTH_ASSIGN_OR_RETURN(std::optional<Row> existing, FindRow(name));
    if (existing) {
      return Fail(ErrorCode::kAlreadyExists,
                  fmt::format("snapshot {} already exists ({})", name, KindName(existing->kind)));
    }
    std::optional<int64_t> parent_id = row.parent_id;
    Snapshot active{.id = row.id, .key = row.key, .kind = row.kind};
    BERTH_ASSIGN_OR_RETURN(active.parent_ids, ParentChain(row.id));
    Snapshot sealed = active;
    if (parent && !parent->empty()) {
      if (!SupportsRebase()) {
        return Fail(ErrorCode::kFailedPrecondition,
                    fmt::format("the {} snapshotter cannot rebase: its snapshots hold their "
                                "parent's tree, so prepare {} on its parent instead",
                                type_, key));
      }
      if (row.parent_id) {
        return Fail(ErrorCode::kFailedPrecondition,
                    fmt::format("snapshot {} already has the parent {}; only a snapshot prepared "
                                "without a parent can be rebased",
                                key, row.parent_key));
      }
      BERTH_ASSIGN_OR_RETURN(std::optional<Row> parent_row, FindRow(*parent));
      if (!parent_row) {
        return Fail(ErrorCode::kNotFound,
                    fmt::format("parent snapshot {} does not exist", *parent));
      }
      if (parent_row->kind != Kind::kCommitted) {
        return Fail(ErrorCode::kFailedPrecondition,
                    fmt::format("parent snapshot {} is {}, not committed; commit it first", *parent,
                                KindName(parent_row->kind)));
      }
      parent_id = parent_row->id;
      Snapshot snapshot{.id = row.id, .key = row.key, .kind = row.kind};
      snapshot.parent_ids.push_back(parent_row->id);
      BERTH_ASSIGN_OR_RETURN(std::vector<int64_t> ancestors, ParentChain(parent_row->id));
      snapshot.parent_ids.insert(snapshot.parent_ids.end(), ancestors.begin(), ancestors.end());
      BERTH_RETURN_IF_ERROR(Rebase(snapshot));
      sealed = std::move(snapshot);
    }
    BERTH_RETURN_IF_ERROR(SealLayer(sealed));
    BERTH_ASSIGN_OR_RETURN(Usage usage, MeasureLayer(row.id));
    if (options_.sync != Durability::kNone) {
      BERTH_RETURN_IF_ERROR(SyncFilesystem(SnapshotDir(row.id)));
    }
    BERTH_ASSIGN_OR_RETURN(
        sqlite::Statement update,
        db_->Prepare(
            "UPDATE snapshots SET key = ?2, kind = 'committed', updated_ns = ?3, size = ?4, "
            "inodes = ?5, parent_id = ?6 WHERE id = ?1"));
    update.Bind(1, row.id)
        .Bind(2, name)
        .Bind(3, NowNanos())
        .Bind(4, usage.size)
        .Bind(5, usage.inodes)
        .Bind(6, parent_id);
    BERTH_RETURN_IF_ERROR(update.Run());
    BERTH_RETURN_IF_ERROR(StoreLabels(row.id, labels));
    CrashPoint("commit:before-commit");
    BERTH_RETURN_IF_ERROR(txn.Commit());
    ReleaseMounts(active);
    AfterCommit(row.id);
    return Ok();
  }();
  return committed;
}

Result<void> LocalSnapshotter::Remove(std::string_view key) {
  auto removed = [&]() -> Result<void> {
    fs::path doomed;
    {
      std::lock_guard lock(mutex_);
      BERTH_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
      BERTH_ASSIGN_OR_RETURN(Row row, GetRow(key));
      BERTH_ASSIGN_OR_RETURN(sqlite::Statement children,
                             db_->Prepare("SELECT count(*) FROM snapshots WHERE parent_id = ?1"));
      children.Bind(1, row.id);
      BERTH_ASSIGN_OR_RETURN(bool has_row, children.Step());
      int64_t child_count = has_row ? children.ColumnInt64(0) : 0;
      if (child_count > 0) {
        return Fail(ErrorCode::kFailedPrecondition,
                    fmt::format("snapshot {} has {} {}; remove them first", key, child_count,
                                child_count == 1 ? "child" : "children"));
      }
      Snapshot gone{.id = row.id, .key = row.key, .kind = row.kind};
      if (row.kind != Kind::kCommitted) {
        BERTH_ASSIGN_OR_RETURN(gone.parent_ids, ParentChain(row.id));
      }
      BERTH_ASSIGN_OR_RETURN(sqlite::Statement remove,
                             db_->Prepare("DELETE FROM snapshots WHERE id = ?1"));
      remove.Bind(1, row.id);
      BERTH_RETURN_IF_ERROR(remove.Run());

      fs::path dir = SnapshotDir(row.id);
      doomed = options_.root / "snapshots" / fmt::format("rm-{}", row.id);
      BERTH_RETURN_IF_ERROR(RemoveTree(doomed));  // garbage from an earlier crash
      bool moved = ::rename(dir.c_str(), doomed.c_str()) == 0;
      if (!moved && errno != ENOENT) {
        return Fail(
            ErrnoError(errno, fmt::format("rename {} to {}", dir.string(), doomed.string())));
      }
      if (auto done = txn.Commit(); !done) {
        if (moved) ::rename(doomed.c_str(), dir.c_str());
        return done;
      }
      if (row.kind != Kind::kCommitted) ReleaseMounts(gone);
      CrashPoint("remove:after-commit");
      if (!moved) return Ok();
    }
    // The snapshot is gone as far as anyone can see; deleting the tree can happen unlocked. If it
    // fails, Cleanup() gets another chance, so the caller still sees success.
    (void)RemoveTree(doomed);
    return Ok();
  }();
  return WithContext(std::move(removed), fmt::format("remove snapshot {}", key));
}

Result<Info> LocalSnapshotter::Stat(std::string_view key) {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(Row row, GetRow(key));
  return ToInfo(row);
}

Result<Info> LocalSnapshotter::UpdateLabels(std::string_view key, const LabelUpdate& update) {
  auto updated = [&]() -> Result<Info> {
    if (update.mode == LabelUpdate::Mode::kReplace && !update.remove.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "a label update that replaces every label cannot also name labels to remove");
    }
    std::lock_guard lock(mutex_);
    BERTH_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
    BERTH_ASSIGN_OR_RETURN(Row row, GetRow(key));
    Labels labels;
    if (update.mode == LabelUpdate::Mode::kMerge) {
      BERTH_ASSIGN_OR_RETURN(labels, LoadLabels(row.id));
      for (const std::string& name : update.remove) labels.erase(name);
    }
    for (const auto& [name, value] : update.set) labels.insert_or_assign(name, value);
    BERTH_RETURN_IF_ERROR(StoreLabels(row.id, labels));
    row.updated_ns = std::max(NowNanos(), row.updated_ns);
    BERTH_ASSIGN_OR_RETURN(sqlite::Statement touch,
                           db_->Prepare("UPDATE snapshots SET updated_ns = ?2 WHERE id = ?1"));
    touch.Bind(1, row.id).Bind(2, row.updated_ns);
    BERTH_RETURN_IF_ERROR(touch.Run());
    BERTH_RETURN_IF_ERROR(txn.Commit());
    Info info;
    info.kind = row.kind;
    info.name = row.key;
    info.parent = row.parent_key;
    info.labels = std::move(labels);
    info.created = FromNanos(row.created_ns);
    info.updated = FromNanos(row.updated_ns);
    return info;
  }();
  return WithContext(std::move(updated), fmt::format("update labels of snapshot {}", key));
}

Result<void> LocalSnapshotter::Rename(std::string_view name, std::string_view new_name,
                                      const Labels& labels) {
  auto renamed = [&]() -> Result<void> {
    BERTH_RETURN_IF_ERROR(CheckName("name", name));
    BERTH_RETURN_IF_ERROR(CheckName("new name", new_name));
    std::lock_guard lock(mutex_);
    BERTH_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
    BERTH_ASSIGN_OR_RETURN(Row row, GetRow(name));
    if (row.kind != Kind::kCommitted) {
      return Fail(ErrorCode::kFailedPrecondition,
                  fmt::format("snapshot {} is {}; only committed snapshots can be renamed", name,
                              KindName(row.kind)));
    }
    BERTH_ASSIGN_OR_RETURN(std::optional<Row> existing, FindRow(new_name));
    if (existing) {
      return Fail(ErrorCode::kAlreadyExists, fmt::format("snapshot {} already exists ({})",
                                                         new_name, KindName(existing->kind)));
    }
    BERTH_ASSIGN_OR_RETURN(
        sqlite::Statement update,
        db_->Prepare("UPDATE snapshots SET key = ?2, updated_ns = ?3 WHERE id = ?1"));
    update.Bind(1, row.id).Bind(2, new_name).Bind(3, std::max(NowNanos(), row.updated_ns));
    BERTH_RETURN_IF_ERROR(update.Run());
    BERTH_RETURN_IF_ERROR(StoreLabels(row.id, labels));
    return txn.Commit();
  }();
  return WithContext(std::move(renamed), fmt::format("rename snapshot {} to {}", name, new_name));
}

Result<Usage> LocalSnapshotter::GetUsage(std::string_view key) {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(Row row, GetRow(key));
  if (row.kind == Kind::kCommitted && row.size && row.inodes) {
    return Usage{.size = *row.size, .inodes = *row.inodes};
  }
  return WithContext(MeasureLayer(row.id), fmt::format("usage of snapshot {}", key));
}

Result<Usage> LocalSnapshotter::MeasureLayer(int64_t id) const { return DiskUsage(LayerDir(id)); }

Result<std::vector<LocalSnapshotter::Snapshot>> LocalSnapshotter::ListMountedSnapshots() {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(sqlite::Statement query,
                         db_->Prepare("SELECT id, key, kind FROM snapshots WHERE snapshotter = ?1 "
                                      "AND kind IN ('active', 'view') ORDER BY id"));
  query.Bind(1, type_);
  std::vector<Snapshot> snapshots;
  while (true) {
    BERTH_ASSIGN_OR_RETURN(bool has_row, query.Step());
    if (!has_row) break;
    snapshots.push_back({.id = query.ColumnInt64(0),
                         .key = query.ColumnText(1),
                         .kind = ParseKind(query.ColumnText(2)).value_or(Kind::kActive)});
  }
  for (Snapshot& snapshot : snapshots) {
    BERTH_ASSIGN_OR_RETURN(snapshot.parent_ids, ParentChain(snapshot.id));
  }
  return snapshots;
}

Result<void> LocalSnapshotter::Walk(const std::function<Result<void>(const Info&)>& visit) {
  std::vector<Info> infos;
  {
    std::lock_guard lock(mutex_);
    BERTH_ASSIGN_OR_RETURN(
        sqlite::Statement query,
        db_->Prepare(std::string(kSelectRow) + "WHERE s.snapshotter = ?1 ORDER BY s.id"));
    query.Bind(1, type_);
    std::vector<Row> rows;
    while (true) {
      BERTH_ASSIGN_OR_RETURN(bool has_row, query.Step());
      if (!has_row) break;
      Row row;
      row.id = query.ColumnInt64(0);
      row.key = query.ColumnText(1);
      row.kind = ParseKind(query.ColumnText(2)).value_or(Kind::kActive);
      row.parent_key = query.ColumnText(4);
      row.created_ns = query.ColumnInt64(5);
      row.updated_ns = query.ColumnInt64(6);
      rows.push_back(std::move(row));
    }
    for (const Row& row : rows) {
      BERTH_ASSIGN_OR_RETURN(Info info, ToInfo(row));
      infos.push_back(std::move(info));
    }
  }
  for (const Info& info : infos) BERTH_RETURN_IF_ERROR(visit(info));
  return Ok();
}

Result<ApplyTarget> LocalSnapshotter::GetApplyTarget(std::string_view key) {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(Row row, GetRow(key));
  if (row.kind != Kind::kActive) {
    return Fail(ErrorCode::kFailedPrecondition,
                fmt::format("snapshot {} is {}; layers can only be applied to an active snapshot",
                            key, KindName(row.kind)));
  }
  Snapshot snapshot{.id = row.id, .key = row.key, .kind = row.kind};
  BERTH_ASSIGN_OR_RETURN(snapshot.parent_ids, ParentChain(row.id));
  return ApplyTargetFor(snapshot);
}

Result<std::vector<fs::path>> LocalSnapshotter::FindOrphansLocked() {
  std::set<int64_t> known;
  {
    BERTH_ASSIGN_OR_RETURN(sqlite::Statement query,
                           db_->Prepare("SELECT id FROM snapshots WHERE snapshotter = ?1"));
    query.Bind(1, type_);
    while (true) {
      BERTH_ASSIGN_OR_RETURN(bool has_row, query.Step());
      if (!has_row) break;
      known.insert(query.ColumnInt64(0));
    }
  }
  fs::path snapshots = options_.root / "snapshots";
  std::error_code error;
  std::vector<fs::path> orphans;
  for (fs::directory_iterator it(snapshots, error), end; !error && it != end; it.increment(error)) {
    std::optional<int64_t> id = LocalSnapshotter::ParseSnapshotId(it->path().filename().string());
    if (id && known.contains(*id)) continue;
    orphans.push_back(it->path());
  }
  if (error) {
    return Fail(ErrnoError(error.value(), fmt::format("list {}", snapshots.string())));
  }
  std::sort(orphans.begin(), orphans.end());
  return orphans;
}

Result<std::vector<fs::path>> LocalSnapshotter::FindOrphans() {
  std::lock_guard lock(mutex_);
  return FindOrphansLocked();
}

Result<std::vector<fs::path>> LocalSnapshotter::Cleanup() {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(std::vector<fs::path> orphans, FindOrphansLocked());
  std::vector<fs::path> removed;
  for (const fs::path& orphan : orphans) {
    BERTH_RETURN_IF_ERROR(WithContext(RemoveTree(orphan), "clean up snapshot directories"));
    removed.push_back(orphan);
  }
  return removed;
}

Result<std::vector<std::string>> LocalSnapshotter::FindMissing() {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(
      sqlite::Statement query,
      db_->Prepare("SELECT id, key, kind FROM snapshots WHERE snapshotter = ?1 ORDER BY id"));
  query.Bind(1, type_);
  std::vector<std::string> missing;
  while (true) {
    BERTH_ASSIGN_OR_RETURN(bool has_row, query.Step());
    if (!has_row) break;
    const Kind kind = ParseKind(query.ColumnText(2)).value_or(Kind::kActive);
    if (!LayerIntact(query.ColumnInt64(0), kind)) missing.push_back(query.ColumnText(1));
  }
  return missing;
}

Result<void> LocalSnapshotter::MakeOverlayDirectories(const fs::path& directory, Kind kind) {
  const fs::path layer = directory / "fs";
  if (::mkdir(layer.c_str(), 0755) != 0) {
    return Fail(ErrnoError(errno, fmt::format("create {}", layer.string())));
  }
  if (kind == Kind::kActive) {
    const fs::path work = directory / "work";
    if (::mkdir(work.c_str(), 0711) != 0) {
      return Fail(ErrnoError(errno, fmt::format("create {}", work.string())));
    }
  }
  return Ok();
}

bool LocalSnapshotter::LayerIntact(int64_t id, Kind kind) const {
  (void)kind;
  std::error_code error;
  return fs::is_directory(LayerDir(id), error);
}

Result<void> LocalSnapshotter::FinishInterruptedCommits() {
  std::vector<int64_t> committed;
  {
    std::lock_guard lock(mutex_);
    BERTH_ASSIGN_OR_RETURN(sqlite::Statement query,
                           db_->Prepare("SELECT id FROM snapshots WHERE snapshotter = ?1 AND "
                                        "kind = 'committed' ORDER BY id"));
    query.Bind(1, type_);
    while (true) {
      BERTH_ASSIGN_OR_RETURN(bool has_row, query.Step());
      if (!has_row) break;
      committed.push_back(query.ColumnInt64(0));
    }
  }
  for (int64_t id : committed) AfterCommit(id);
  return Ok();
}

Result<int64_t> LocalSnapshotter::IdForTest(std::string_view key) {
  std::lock_guard lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(Row row, GetRow(key));
  return row.id;
}

std::optional<int64_t> LocalSnapshotter::ParseSnapshotId(std::string_view name) {
  int64_t id = 0;
  auto [end, error] = std::from_chars(name.data(), name.data() + name.size(), id);
  if (error != std::errc() || end != name.data() + name.size() || id <= 0) return std::nullopt;
  if (std::to_string(id) != name) return std::nullopt;  // "007" is not ours
  return id;
}

Result<std::vector<Mount>> LocalSnapshotter::OverlayStackMounts(
    const Snapshot& snapshot, const std::function<std::filesystem::path(int64_t)>& lower_dir,
    std::vector<std::string> extra_options) const {
  const std::string layer = LayerDir(snapshot.id).string();
  if (snapshot.parent_ids.empty()) {
    std::string access = snapshot.kind == Kind::kActive ? "rw" : "ro";
    return std::vector<Mount>{{.type = "bind", .source = layer, .options = {"rbind", access}}};
  }
  if (snapshot.kind == Kind::kView && snapshot.parent_ids.size() == 1) {
    return std::vector<Mount>{{.type = "bind",
                               .source = lower_dir(snapshot.parent_ids.front()).string(),
                               .options = {"rbind", "ro"}}};
  }
  std::string lowerdir = "lowerdir=";
  for (size_t i = 0; i < snapshot.parent_ids.size(); ++i) {
    if (i > 0) lowerdir += ':';
    lowerdir += lower_dir(snapshot.parent_ids[i]).string();
  }
  std::vector<std::string> options{"index=off"};
  for (std::string& option : extra_options) options.push_back(std::move(option));
  if (snapshot.kind == Kind::kActive) {
    options.push_back("workdir=" + (SnapshotDir(snapshot.id) / "work").string());
    options.push_back("upperdir=" + layer);
  }
  options.push_back(std::move(lowerdir));
  const size_t length = MountDataLength(options);
  const auto page_size = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  if (length + 1 > page_size) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("snapshot {} has {} parent layers; their overlay options need {} "
                            "bytes but the kernel takes at most {} (one page). Images this deep "
                            "are not supported yet (containerd has the same limit at about 128 "
                            "layers); use a shorter snapshotter root or flatten the image",
                            snapshot.key, snapshot.parent_ids.size(), length, page_size - 1));
  }
  return std::vector<Mount>{
      {.type = "overlay", .source = "overlay", .options = std::move(options)}};
}

}  // namespace berth::snapshot
