// File: berth/snapshot/native_snapshotter.h
//
// NativeSnapshotter works on any filesystem and needs no overlayfs: every snapshot is a full,
// independent directory tree, made by copying its parent's tree (CopyTree: modes, owners,
// xattrs, hard links, symlinks, devices, timestamps; reflinks where the filesystem can).
//
//   <root>/lock, <root>/metadata.db   as in local_snapshotter.h
//   <root>/snapshots/<id>/            the snapshot's complete tree
//
// Mounts are a single bind mount of <id>: read-write for an active snapshot, read-only for a
// view. Layers are applied straight into <id> with WhiteoutStyle::kDelete: the parent's files
// are already there, so a whiteout is a deletion.
//
// Costs: Prepare and View copy the whole parent tree (time and space grow with image size), and
// GetUsage() counts the whole tree, parents' files included, because that is what it occupies.
//
// Thread safety: see Snapshotter.
#pragma once

#include <memory>

#include "berth/snapshot/local_snapshotter.h"

namespace berth::snapshot {

struct NativeSnapshotterOptions : LocalSnapshotterOptions {};

class NativeSnapshotter final : public LocalSnapshotter {
 public:
  // Creates <root> if needed, locks it and opens the metadata. kUnavailable when another
  // snapshotter holds the root.
  static Result<std::unique_ptr<NativeSnapshotter>> Open(const NativeSnapshotterOptions& options);

 protected:
  Result<void> PopulateDirectory(const std::filesystem::path& directory,
                                 const Snapshot& snapshot) override;
  std::filesystem::path LayerDir(int64_t id) const override;
  Result<std::vector<Mount>> MountsFor(const Snapshot& snapshot) const override;
  ApplyTarget ApplyTargetFor(const Snapshot& snapshot) const override;

 private:
  explicit NativeSnapshotter(const NativeSnapshotterOptions& options)
      : LocalSnapshotter("native", options) {}
};

}  // namespace berth::snapshot
