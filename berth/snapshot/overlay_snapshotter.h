// File: berth/snapshot/overlay_snapshotter.h
//
// OverlaySnapshotter, berth's default snapshotter, stores each snapshot as one overlayfs layer:
//
//   <root>/lock                    held while the snapshotter is open
//   <root>/metadata.db             SQLite metadata (see local_snapshotter.h)
//   <root>/snapshots/<id>/fs       the layer's own files (an overlay upperdir or lowerdir)
//   <root>/snapshots/<id>/work     overlay's workdir for an active snapshot
//
// Mounts (nearest parent first in lowerdir, like containerd):
//   active, no parent      bind <id>/fs, rw
//   active, parents        overlay lowerdir=<p1>/fs:<p2>/fs:…,upperdir=<id>/fs,workdir=<id>/work
//   view, no parent        bind <id>/fs, ro (an empty tree)
//   view, one parent       bind <p1>/fs, ro (overlay needs two lowerdirs when it has no upper)
//   view, more parents     overlay lowerdir=<p1>/fs:<p2>/fs:…, read-only by construction
// Every overlay mount carries index=off (hard links across layers would otherwise tie a layer to
// one upper directory), and userxattr when not running as root.
//
// Layers need no mount to be applied: GetApplyTarget() returns <id>/fs with overlay whiteouts
// (character device 0/0, opaque xattr), exactly what overlayfs reads back, and the parents'
// <p1>/fs, <p2>/fs, … as the lower directories. Because a layer
// directory never holds its parent's files, a snapshot prepared without a parent can be given
// one at commit time (CommitRebased), so layers of one image can be applied in parallel.
//
// Limits: the overlay option string must fit in one page (4096 bytes on x86-64). With the
// default root each lowerdir costs about 50 bytes, so chains deeper than ~75 layers fail with
// kResourceExhausted in Prepare/View/Mounts. containerd has the same limit (~128 layers with its
// shorter paths); it can be lifted later by mounting from inside <root>/snapshots with relative
// paths.
//
// Thread safety: see Snapshotter.
#pragma once

#include <memory>

#include "berth/snapshot/local_snapshotter.h"

namespace berth::snapshot {

struct OverlaySnapshotterOptions : LocalSnapshotterOptions {};

class OverlaySnapshotter final : public LocalSnapshotter {
 public:
  // Creates <root> if needed, locks it and opens the metadata. kUnavailable when another
  // snapshotter holds the root; kFailedPrecondition when the kernel has no overlay filesystem.
  static Result<std::unique_ptr<OverlaySnapshotter>> Open(const OverlaySnapshotterOptions& options);

  // Whether this kernel lists overlay in /proc/filesystems.
  static bool KernelSupportsOverlay();

  // Layer directories hold only their own files, so CommitRebased() works.
  bool SupportsRebase() const override { return true; }

 protected:
  Result<void> PopulateDirectory(const std::filesystem::path& directory,
                                 const Snapshot& snapshot) override;
  std::filesystem::path LayerDir(int64_t id) const override;
  Result<std::vector<Mount>> MountsFor(const Snapshot& snapshot) const override;
  ApplyTarget ApplyTargetFor(const Snapshot& snapshot) const override;
  Result<void> Rebase(const Snapshot& snapshot) override;

 private:
  // Gives <layer> the owner and mode of the nearest parent's root (see PopulateDirectory).
  Result<void> InheritRootAttributes(const std::filesystem::path& layer,
                                     const Snapshot& snapshot) const;
  explicit OverlaySnapshotter(const OverlaySnapshotterOptions& options);
  bool userxattr_;
};

}  // namespace berth::snapshot
