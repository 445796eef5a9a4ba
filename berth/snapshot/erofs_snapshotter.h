// File: berth/snapshot/erofs_snapshotter.h
//
// ErofsSnapshotter stores each committed layer as one EROFS image file and presents snapshots as
// overlayfs over read-only mounts of those images:
//
//   <root>/lock                         held while the snapshotter is open
//   <root>/metadata.db                  SQLite metadata (see local_snapshotter.h)
//   <root>/snapshots/<id>/layer.erofs   a committed layer (erofs/image_writer.h's format)
//   <root>/snapshots/<id>/fs            an active snapshot's upper directory (empty once committed)
//   <root>/snapshots/<id>/work          overlay's workdir for an active snapshot
//   <root>/mounts/<id>                  the read-only mount of layer <id>, while something uses it
//
// Layer mounts: a committed layer is mounted read-only at <root>/mounts/<id> while an active
// snapshot or view stacked on it exists: a file-backed EROFS mount where the kernel takes one
// (Linux ≥ 6.12), else through a loop device (LOOP_CONFIGURE, read-only, autoclear, so the device
// goes away with the mount); ErofsSnapshotterOptions::layer_mounts can force the loop device. A
// layer mount is made by the first Prepare/View that needs it, counted by every active snapshot
// and view whose chain holds it, and detached (MNT_DETACH) when the last of them is removed or
// committed. Open() rebuilds them from the metadata: it mounts what the active snapshots and views
// need (keeping mounts left by an earlier process; a layer whose image is gone or damaged stays
// unmounted, with a warning, and FindMissing() reports it) and unmounts what nothing needs;
// destroying the
// snapshotter detaches every layer mount (mounts made from them, a running container's overlay,
// keep working: the kernel holds the layers until those go).
//
// Mounts (nearest parent first in lowerdir, like OverlaySnapshotter):
//   active, no parent      bind <id>/fs, rw
//   active, parents        overlay lowerdir=<mounts/p1>:<mounts/p2>:…,upperdir=<id>/fs,
//                          workdir=<id>/work, index=off
//   view, no parent        bind <id>/fs, ro (an empty tree)
//   view, one parent       bind <mounts/p1>, ro
//   view, more parents     overlay lowerdir=<mounts/p1>:<mounts/p2>:…, index=off (read-only)
// Chains deeper than one page of overlay options fail with kResourceExhausted, as overlay's.
//
// Applying a layer: GetApplyTarget() gives <id>/fs with overlay whiteouts and the parents' layer
// mounts as lower directories, and ApplyTarget::layer_image = <id>/layer.erofs, so the unpacker
// may write the layer as an EROFS image instead (see snapshotter.h). Commit: when <id>/fs holds
// anything, it is converted into the image by erofs::WalkDirectory + erofs::ImageWriter (written
// as layer.erofs.tmp, fsynced unless Durability::kNone, renamed), replacing any image already
// there; otherwise an existing layer.erofs is the layer (an empty fs/ and no image give an empty
// layer). fs/ is emptied and work/ removed once the row says committed. A crash leaves at worst a
// layer.erofs.tmp or the files of an active snapshot beside its image, which the next Commit
// redoes, or a committed layer's fs/ and work/ not yet emptied, which Open() empties. Layers hold
// only their own files, so CommitRebased() works.
//
// Usage: a committed layer counts its image's allocated bytes (st_blocks * 512) and the inodes
// the image holds; an active snapshot counts its fs/ tree (or the image, once the unpacker wrote
// one).
//
// Thread safety: see Snapshotter. Needs CAP_SYS_ADMIN (it mounts).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>

#include "berth/snapshot/local_snapshotter.h"

namespace berth::snapshot {

// How a committed layer's image is mounted.
enum class LayerMountMethod {
  kAuto,        // file-backed EROFS mount; a loop device where the kernel cannot do that
  kLoopDevice,  // always a loop device (tests of the fallback, kernels before 6.12)
};

struct ErofsSnapshotterOptions : LocalSnapshotterOptions {
  LayerMountMethod layer_mounts = LayerMountMethod::kAuto;
};

class ErofsSnapshotter final : public LocalSnapshotter {
 public:
  // Creates <root> if needed, locks it, opens the metadata and rebuilds the layer mounts (see
  // the file comment). kUnavailable when another snapshotter holds the root;
  // kFailedPrecondition when the kernel has no erofs or overlay filesystem; errno errors from a
  // layer that cannot be mounted.
  static Result<std::unique_ptr<ErofsSnapshotter>> Open(const ErofsSnapshotterOptions& options);

  // Whether this kernel lists erofs (and overlay) in /proc/filesystems.
  static bool KernelSupportsErofs();

  ~ErofsSnapshotter() override;

  // Layer images hold only their own files, so CommitRebased() works.
  bool SupportsRebase() const override { return true; }

  // <root>/mounts/<id>: where layer `id` is mounted while something uses it.
  std::filesystem::path LayerMountPoint(int64_t id) const;
  // How many active snapshots and views use the mount of layer `id` (0: not mounted).
  int LayerMountUsersForTest(int64_t id);

 protected:
  Result<void> PopulateDirectory(const std::filesystem::path& directory,
                                 const Snapshot& snapshot) override;
  std::filesystem::path LayerDir(int64_t id) const override;
  Result<std::vector<Mount>> MountsFor(const Snapshot& snapshot) const override;
  ApplyTarget ApplyTargetFor(const Snapshot& snapshot) const override;
  Result<void> AcquireMounts(const Snapshot& snapshot) override;
  void ReleaseMounts(const Snapshot& snapshot) override;
  Result<void> SealLayer(const Snapshot& snapshot) override;
  void AfterCommit(int64_t id) override;
  Result<Usage> MeasureLayer(int64_t id) const override;
  // A committed layer is whole when its image is (erofs::ReadImageHeader: present, an EROFS
  // superblock, not truncated).
  bool LayerIntact(int64_t id, Kind kind) const override;

 private:
  explicit ErofsSnapshotter(const ErofsSnapshotterOptions& options);
  // Mounts what the active snapshots and views need; unmounts what nothing needs.
  Result<void> Reconcile();
  std::filesystem::path ImagePath(int64_t id) const;
  Result<void> MountLayer(int64_t id);
  void UnmountLayer(int64_t id);

  const LayerMountMethod layer_mounts_;
  std::mutex users_mutex_;
  std::map<int64_t, int> users_;  // layer id → active snapshots and views using its mount
};

}  // namespace berth::snapshot
