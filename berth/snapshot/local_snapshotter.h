// File: berth/snapshot/local_snapshotter.h
//
// LocalSnapshotter is the shared implementation of the on-disk snapshotters (overlay, native,
// erofs): one directory per snapshot under <root>/snapshots/<id>/ plus metadata in SQLite.
// Subclasses decide what a new snapshot directory holds, how it is mounted, where layers are
// written and what a commit turns the directory into. Users should include
// overlay_snapshotter.h, native_snapshotter.h or erofs_snapshotter.h and program against
// Snapshotter (and Cleaner, for maintenance); this header is for those implementations.
//
// Metadata schema (component "snapshots", version 1, in berth_schema; older databases kept it in
// PRAGMA user_version, which sqlite::Migrate adopts), shared by every snapshotter type through a
// `snapshotter` column so that overlay and native snapshots may live in one database file:
//   snapshots(id INTEGER PRIMARY KEY AUTOINCREMENT, snapshotter, key, kind, parent_id,
//             created_ns, updated_ns, size, inodes, UNIQUE(snapshotter, key))
//   snapshot_labels(snapshot_id, name, value)
// `id` is the directory name. `parent_id` is a foreign key, so a parent cannot disappear under
// a child even if this code had a bug.
//
// How changes stay crash safe:
//   Prepare/View: insert the row in a write transaction, build the directory as
//     <root>/snapshots/new-XXXXXX, rename it to <id>, (syncfs it and fsync snapshots/) and
//     commit. A crash before the commit
//     leaves new-XXXXXX or an <id> unknown to the metadata: garbage for Cleanup(). A stale <id>
//     directory found at rename time is such garbage (the write lock is held, so no one else can
//     have created that row) and is replaced.
//   Commit: seal the layer (SealLayer: erofs writes its image aside and renames it), measure
//     usage, syncfs the snapshot (unless Durability::kNone) so its files are durable
//     before the row says committed, then update the row in one transaction.
//   Remove: delete the row and rename <id> to rm-<id> in one transaction, then delete the tree.
//     A crash after the commit leaves rm-<id> for Cleanup().
//
// Thread safety: every operation holds one mutex for its metadata work, so operations are
// serialised within a process. An flock on <root>/lock keeps other processes (and other
// snapshotter objects) off the same root.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/durability.h"
#include "berth/base/unique_fd.h"
#include "berth/snapshot/cleaner.h"
#include "berth/snapshot/snapshotter.h"
#include "berth/sqlite/sqlite.h"

namespace berth::snapshot {

struct LocalSnapshotterOptions {
  std::filesystem::path root;  // e.g. /var/lib/berth/snapshots/overlayfs
  // The SQLite metadata file; empty means <root>/metadata.db.
  std::filesystem::path metadata_path;
  // Whether a change is on stable storage before the metadata says it happened. Unless kNone
  // (kLayer and kFile alike), Prepare runs syncfs(2) on the new snapshot and fsyncs the
  // snapshots directory, and Commit runs syncfs(2) on the snapshot, before the metadata
  // transaction commits, and SQLite runs with
  // synchronous=FULL. With kNone nothing is synced (tests, throwaway roots): a power loss may
  // report snapshots whose files are incomplete.
  Durability sync = Durability::kLayer;
  // Test hook: called at named points inside operations ("prepare:before-commit",
  // "commit:before-commit", "remove:after-commit") so tests can simulate a crash there.
  std::function<void(std::string_view point)> crash_point_for_test;
};

class LocalSnapshotter : public Snapshotter, public Cleaner {
 public:
  ~LocalSnapshotter() override;

  Result<std::vector<Mount>> Prepare(std::string_view key, std::string_view parent,
                                     const Labels& labels) override;
  Result<std::vector<Mount>> View(std::string_view key, std::string_view parent,
                                  const Labels& labels) override;
  Result<std::vector<Mount>> Mounts(std::string_view key) override;
  Result<void> Commit(std::string_view name, std::string_view key, const Labels& labels) override;
  bool SupportsRebase() const override { return false; }
  Result<void> CommitRebased(std::string_view name, std::string_view key, std::string_view parent,
                             const Labels& labels) override;
  Result<void> Remove(std::string_view key) override;
  Result<Info> Stat(std::string_view key) override;
  Result<Info> UpdateLabels(std::string_view key, const LabelUpdate& update) override;
  Result<void> Rename(std::string_view name, std::string_view new_name,
                      const Labels& labels) override;
  Result<Usage> GetUsage(std::string_view key) override;
  Result<void> Walk(const std::function<Result<void>(const Info&)>& visit) override;
  Result<ApplyTarget> GetApplyTarget(std::string_view key) override;

  // Cleaner.
  Result<std::vector<std::filesystem::path>> Cleanup() override;
  Result<std::vector<std::filesystem::path>> FindOrphans() override;
  Result<std::vector<std::string>> FindMissing() override;

  const std::filesystem::path& root() const { return options_.root; }
  // <root>/snapshots/<id>: the directory of snapshot `id`.
  std::filesystem::path SnapshotDir(int64_t id) const;
  // The numeric id (directory name) of a snapshot, for tests and debugging. kNotFound.
  Result<int64_t> IdForTest(std::string_view key);

 protected:
  // The snapshot id a directory name spells (snapshots/<id>, and the erofs layer mounts'
  // mounts/<id>): digits, > 0, no leading zeros; nullopt for anything else.
  static std::optional<int64_t> ParseSnapshotId(std::string_view name);

  // What subclasses need to know about one snapshot.
  struct Snapshot {
    int64_t id = 0;
    std::string key;
    Kind kind = Kind::kActive;
    std::vector<int64_t> parent_ids;  // nearest parent first
  };

  LocalSnapshotter(std::string type, LocalSnapshotterOptions options);
  // Creates the root, takes its lock, opens and migrates the metadata, and finishes commits a
  // crash interrupted (AfterCommit). Called once by the subclass's Open().
  Result<void> Initialize();

  // Fills the new, empty directory `directory` that will become `snapshot`'s SnapshotDir.
  virtual Result<void> PopulateDirectory(const std::filesystem::path& directory,
                                         const Snapshot& snapshot) = 0;
  // The tree holding `id`'s own files (the layer); GetUsage() measures it.
  virtual std::filesystem::path LayerDir(int64_t id) const = 0;
  // Mounts for an active snapshot or a view.
  virtual Result<std::vector<Mount>> MountsFor(const Snapshot& snapshot) const = 0;
  // Where layers are written into an active snapshot.
  virtual ApplyTarget ApplyTargetFor(const Snapshot& snapshot) const = 0;
  // CommitRebased(): adjusts the directory of `snapshot`, whose parent_ids are now set, before
  // it is committed. Only called when SupportsRebase().
  virtual Result<void> Rebase(const Snapshot& snapshot) {
    (void)snapshot;
    return Ok();
  }
  // The hooks below let a subclass keep state beside each active snapshot and view (the erofs
  // snapshotter's layer mounts). All run with the metadata lock held.
  //
  // Prepare/View: called once the new snapshot's directory is in place, before its row commits.
  // A failure aborts the creation.
  virtual Result<void> AcquireMounts(const Snapshot& snapshot) {
    (void)snapshot;
    return Ok();
  }
  // Undoes AcquireMounts for an active snapshot or view that is gone: removed, committed (with
  // the parent_ids it was created with), or whose creation failed after AcquireMounts.
  virtual void ReleaseMounts(const Snapshot& snapshot) { (void)snapshot; }
  // Commit/CommitRebased: turns the active snapshot's directory into its committed form, before
  // its usage is measured and its row commits. `snapshot` carries the final parent_ids.
  virtual Result<void> SealLayer(const Snapshot& snapshot) {
    (void)snapshot;
    return Ok();
  }
  // After the row of `id` says committed: drops what only the active snapshot needed. Failures
  // are ignored (the snapshot is committed either way). Initialize() runs it again for every
  // committed snapshot, since a crash may have cut it short: it must be cheap when there is
  // nothing left to drop.
  virtual void AfterCommit(int64_t id) { (void)id; }
  // Whether the layer of `id`, a snapshot of `kind`, is still whole on disk (FindMissing()
  // reports those that are not); by default, whether LayerDir(id) is a directory.
  virtual bool LayerIntact(int64_t id, Kind kind) const;
  // The disk usage of `id`'s layer; by default DiskUsage(LayerDir(id)).
  virtual Result<Usage> MeasureLayer(int64_t id) const;
  // Every active snapshot and view, with its parent chain, for a subclass's Open() to rebuild
  // what AcquireMounts made. Takes the metadata lock.
  Result<std::vector<Snapshot>> ListMountedSnapshots();

  // For PopulateDirectory of a snapshotter whose layers overlayfs stacks (overlay, erofs): makes
  // `directory`/fs (0755) and, for an active snapshot, `directory`/work (0711, overlay's
  // workdir).
  static Result<void> MakeOverlayDirectories(const std::filesystem::path& directory, Kind kind);
  // The mounts of a snapshot whose layers overlayfs stacks (overlay, erofs): without parents a
  // bind of LayerDir (rw for an active snapshot, ro for a view); a view of one parent a read-only
  // bind of lower_dir(parent); else overlay, index=off plus `extra_options`, lowerdir= the
  // parents' lower_dir, nearest first, and for an active snapshot upperdir=LayerDir and
  // workdir=<SnapshotDir>/work. kResourceExhausted, naming the snapshot, when the options do
  // not fit in the one page the kernel takes.
  Result<std::vector<Mount>> OverlayStackMounts(
      const Snapshot& snapshot, const std::function<std::filesystem::path(int64_t)>& lower_dir,
      std::vector<std::string> extra_options) const;
  const LocalSnapshotterOptions& options() const { return options_; }

 private:
  // REQUIRES: mutex_ held.
  Result<std::vector<std::filesystem::path>> FindOrphansLocked();
  // AfterCommit() for every committed snapshot (see there).
  Result<void> FinishInterruptedCommits();
  struct Row;
  Result<void> CommitImpl(std::string_view name, std::string_view key,
                          std::optional<std::string_view> parent, const Labels& labels);
  Result<std::vector<Mount>> Create(Kind kind, std::string_view key, std::string_view parent,
                                    const Labels& labels);
  Result<std::optional<Row>> FindRow(std::string_view key);
  Result<Row> GetRow(std::string_view key);
  Result<std::vector<int64_t>> ParentChain(int64_t id);
  Result<Labels> LoadLabels(int64_t id);
  Result<void> StoreLabels(int64_t id, const Labels& labels);
  Result<Info> ToInfo(const Row& row);
  void CrashPoint(std::string_view point) const;

  const std::string type_;  // "overlayfs", "native", "erofs"
  const LocalSnapshotterOptions options_;
  UniqueFd lock_fd_;
  std::mutex mutex_;
  std::unique_ptr<sqlite::Database> db_;  // guarded by mutex_
};

}  // namespace berth::snapshot
