// File: berth/unpack/unpacker.h
//
// Unpacker turns an image's layers into committed snapshots named by their chain IDs (with a
// prefix, or on a base snapshot, when UnpackOptions::destination says so), the way containerd's
// unpacker does, but while the layers download:
//
//   layer i ──(blob bytes, from the puller's download thread)──▶ LayerApplier ─▶ snapshot dir
//            └ verified diffID ─▶ commit as chainID(L1..i), in chain order
//
// For one pull, construct an Unpacker and pass it as PullOptions::layer_handler. Afterwards
// SnapshotName() of the top layer names the committed snapshot of the whole stack (its chain ID,
// chain_id(), with the default destination); the image's rootfs is Prepare/View on it.
//
// How a layer travels (layer i, chain ID c_i, parent c_{i-1}):
//   - PlanLayer: c_i already committed, or under the destination's base snapshot → skipped
//     (neither downloaded nor unpacked).
//   - Snapshotters that can rebase (overlayfs): the layer is applied AS IT DOWNLOADS into the
//     directory of its own active snapshot "extract-<random>-<c_i>", prepared without a parent.
//     Layers therefore unpack in parallel, as many as the puller downloads at once. When the
//     blob is complete and the diffID matches config.diff_ids[i], the layer is committed as c_i
//     with CommitRebased(c_i, key, c_{i-1}) — but only after c_{i-1} is committed. A layer whose
//     predecessor is not yet committed is left "applied"; whichever thread commits the
//     predecessor commits it too, so no download thread ever waits for another layer.
//   - Directories a streamed layer needs but does not contain (only "etc/newfile", no "etc/")
//     are created by the applier with default attributes, which on overlayfs would hide the
//     lower layers' mode, owner, mtime and xattrs (ACLs included) of that directory. The
//     applier lists them (ApplyResult::implicit_dirs); just before CommitRebased, once c_{i-1}
//     is committed, each one takes the attributes of the nearest lower layer that shows it as a
//     directory (as containerd's mkparent and overlayfs copy-up do). One that no lower layer
//     has keeps 0755, root, and the newest mtime of its children. The layer applied from the
//     store gets the same through lower_dirs.
//   - A streamed layer that needs its lower layers (a hardlink to a lower layer's file fails the
//     streaming apply with kFailedPrecondition) is applied again from the committed blob once its
//     parent is committed, prepared on the parent with the lower layers' directories given.
//   - Snapshotters that cannot rebase (native: a snapshot is a copy of its parent's tree): the
//     layer cannot be written before its parent exists, so nothing is streamed. The download
//     runs as usual and, when the blob is committed and c_{i-1} is committed, the layer is
//     applied from the content store onto Prepare(key, c_{i-1}) and committed. Downloads of
//     later layers overlap with these applies; the applies themselves are sequential.
//   - Snapshotters whose ApplyTarget has a layer_image (erofs): the layer's tar entries go to
//     an erofs::ImageWriter instead of the directory, streamed the same way and with the same
//     diffID check; the image is finished (fsynced with SyncPolicy other than kNone) and renamed
//     to layer_image before Commit. Its implicit directories (erofs::ImageWriter::
//     ImplicitDirectories) take the lower layers' attributes as on overlayfs: an image that has
//     some and a parent waits, unfinished (its data written, its metadata in memory), until
//     c_{i-1} is committed, then inherits them from the parent chain's layer mounts and is
//     finished; any other is finished as its download ends. A layer that hardlinks lower
//     layers' files is applied from the blob as files instead, and Commit turns those into the
//     image.
//   - A chain ID committed meanwhile by someone else (a concurrent pull): our copy is removed and
//     theirs is used.
//   - End(false), or any failure: every active snapshot this unpacker made is removed. Layers
//     below a failure that were committed stay (they are correct and reusable).
//
// Errors: a diffID mismatch is kDataLoss and leaves no snapshot for that chain ID; a layer that
// would take its filesystem below UnpackOptions' reserve is kResourceExhausted, and one that
// inflates past max_inflate_ratio is kInvalidArgument (both leave no snapshot); apply errors
// (hostile archives: kPermissionDenied, kInvalidArgument, kResourceExhausted, kDataLoss for
// truncation) come from berth/archive; snapshotter errors as documented there.
//
// Thread safety: the LayerHandler and LayerObserver calls may come from the puller's threads
// concurrently, as the puller documents. chain_id() and stats() are for after End().
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "berth/archive/layer_applier.h"
#include "berth/base/result.h"
#include "berth/content/store.h"
#include "berth/image/manifest.h"
#include "berth/pull/puller.h"
#include "berth/snapshot/snapshotter.h"
#include "berth/unpack/layer_progress.h"

namespace berth::unpack {

// How many inflated bytes of a layer pass between two checks of the free space (statvfs).
inline constexpr uint64_t kSpaceCheckInterval = uint64_t{8} << 20;
// Below this many inflated bytes no layer is refused for its inflate ratio.
inline constexpr uint64_t kMinInflateLimit = uint64_t{1} << 20;

// Where an Unpacker commits an image's layers (UnpackOptions::destination). The default commits
// each layer under its chain ID, from the first layer up.
struct UnpackDestination {
  // Layer i is committed as name_prefix + chainID(L1..i).
  std::string name_prefix;
  // Optional: the image's lower layers are already unpacked as the committed snapshot
  // `base_snapshot`, whose chain ID is `base_chain_id` (one of the image's chain IDs, else Begin
  // fails with kInvalidArgument). The layers it covers are neither fetched nor unpacked, and the
  // first layer above it is committed on top of it. containerd's remote snapshots use this to
  // unpack an image onto the layers containerd already has (berth/containerd/remote_layers.h).
  std::string base_snapshot;
  std::optional<Digest> base_chain_id;
};

struct UnpackOptions {
  UnpackDestination destination;
  // Durability of the written files. With SyncPolicy::kNone the snapshotter's own durability
  // (syncfs at Commit) still applies; berth/stack/image_stack.cc maps the config's pull.sync
  // ("file" → kFsyncEachFile) to this.
  archive::SyncPolicy sync = archive::SyncPolicy::kNone;
  // Largest uncompressed size of one layer (decompression bombs); 0 for no limit.
  uint64_t max_layer_size = uint64_t{256} << 30;
  // Free space a layer being written must leave on the filesystem of its snapshot directory:
  // the larger of min_free_bytes and min_free_percent % of the filesystem's size (config's
  // pull.min_free_space; both 0: no reserve). Measured with statvfs when the layer starts and
  // every kSpaceCheckInterval bytes it inflates; below it, the layer fails with
  // kResourceExhausted naming the layer, how far it inflated, the filesystem's mount point and
  // the reserve. A filesystem that cannot be measured is not checked.
  uint64_t min_free_bytes = 0;
  double min_free_percent = 0;
  // A layer inflating to more than this many times its compressed size, and to more than
  // kMinInflateLimit, fails with kInvalidArgument as a decompression bomb (config's
  // pull.max_inflate_ratio); 0: off. (A tiny layer's tar padding alone inflates it 50×.)
  double max_inflate_ratio = 0;
  archive::GzipBackend gzip_backend = archive::GzipBackend::kIsal;
  // Threads per layer (archive::ApplyThreading): kOne (decompress, hash and untar on the download
  // thread), kTwo (hash and untar on a worker of its own), kThree (decompress on one more), or
  // kAuto, decided by the LayerThreadBudget as the layer starts. Measured on the idle 2-core VM
  // (apply_bench, 171 MB tar, tmpfs): ISA-L 294 → 403 MB/s, zstd 291 → 475 MB/s with two threads;
  // under load one thread wins.
  enum class LayerThreads { kOne, kTwo, kThree, kAuto };
  LayerThreads layer_threads = LayerThreads::kAuto;
  // Apply archived owners (needs root). Without it files belong to the caller.
  bool preserve_ownership = true;
};

// LayerThreadBudget decides how many threads a layer gets as it starts applying: as many as
// LayerThreads says, and for kAuto: three for a layer that starts while no other is applying (by
// every Unpacker that shares the budget) on two cores or more, so that receiving, inflating and
// untarring one big layer each get a core's share; two while the layers already applying and
// this one's two threads fit the cores; otherwise one. It counts a layer
// from Begin() until its Slot is destroyed. A process has one budget, owned by its composition
// root (berth/stack's ImageStack, for berthd and the CLI's embedded mode) and given to every
// Unpacker, so that concurrent pulls see each other's layers.
//
// Thread safety: Begin() may be called from any thread; a Slot belongs to one layer.
class LayerThreadBudget {
 public:
  // The layer counted as applying; releases its place when destroyed.
  class Slot {
   public:
    Slot(Slot&& other) noexcept;
    Slot& operator=(Slot&&) = delete;
    ~Slot();
    archive::ApplyThreading threading() const { return threading_; }

   private:
    friend class LayerThreadBudget;
    Slot(LayerThreadBudget* budget, archive::ApplyThreading threading)
        : budget_(budget), threading_(threading) {}
    LayerThreadBudget* budget_;
    archive::ApplyThreading threading_;
  };

  // `cores`: how many cores the layers share; 0 for std::thread::hardware_concurrency().
  explicit LayerThreadBudget(int cores = 0);
  LayerThreadBudget(const LayerThreadBudget&) = delete;
  LayerThreadBudget& operator=(const LayerThreadBudget&) = delete;

  // Counts one more layer as applying, with `mode` deciding its threads (see above). The budget
  // must outlive the returned Slot.
  Slot Begin(UnpackOptions::LayerThreads mode);

 private:
  const int cores_;
  std::atomic<int> applying_{0};
};

struct UnpackStats {
  size_t layers = 0;
  size_t already_present = 0;     // skipped: chain ID committed before
  size_t streamed = 0;            // applied while downloading
  size_t applied_from_store = 0;  // applied from the committed blob (native, fallback)
  size_t committed = 0;           // committed by this unpacker
  size_t lost_races = 0;          // committed by someone else meanwhile; ours discarded
  uint64_t uncompressed_bytes = 0;
};

class Unpacker final : public pull::LayerHandler {
 public:
  // `snapshotter`, `store` and `threads` must outlive the Unpacker. `progress` may be empty.
  // `lease`, if given, must outlive the Unpacker: it is told the chain IDs (at Begin) and each
  // active snapshot (before it is prepared), so garbage collection keeps them.
  Unpacker(snapshot::Snapshotter& snapshotter, content::Store& store, LayerThreadBudget& threads,
           UnpackOptions options, LayerProgressFn progress = {}, pull::PullLease* lease = nullptr);
  // Removes any active snapshot left behind (when End() was never called).
  ~Unpacker() override;
  Unpacker(const Unpacker&) = delete;
  Unpacker& operator=(const Unpacker&) = delete;

  // pull::LayerHandler. kInvalidArgument when the config lists a different number of diffIDs
  // than the manifest has layers, or there are no layers.
  Result<void> Begin(const image::Manifest& manifest, const image::ImageConfig& config) override;
  // Checks the snapshotter (blocks on its metadata) and, for streaming, prepares the layer's
  // active snapshot. kFailedPrecondition when the chain ID exists but is not committed.
  Result<pull::LayerPlan> PlanLayer(size_t index) override;
  // With `success`: commits whatever is left (applying from the store where needed) and returns
  // the first error any layer hit (kInternal for a layer never delivered), removing this
  // unpacker's active snapshots on an error. Without: removes this unpacker's active snapshots.
  Result<void> End(bool success) override;

  // The non-streaming path (UnpackImage): after Begin(), marks every layer that is not
  // committed yet to be applied from its blob in the content store. End(true) then does the work.
  Result<void> PlanAllFromStore();

  // The chain ID of the topmost layer. REQUIRES: End(true) succeeded. The snapshot of layer i is
  // named SnapshotName(i) (the chain ID, unless the options' destination says otherwise).
  const Digest& chain_id() const { return chain_ids_.back(); }
  std::string SnapshotName(size_t index) const;
  const std::vector<Digest>& chain_ids() const { return chain_ids_; }
  UnpackStats stats() const;

 private:
  class StreamingObserver;
  class BlobObserver;
  class LayerWriter;

  // Where a layer's entries go.
  enum class LayerForm {
    kAsTargetPrefers,  // an EROFS image when the ApplyTarget has a layer_image, else files
    kDirectory,        // files under the ApplyTarget's directory
  };

  enum class State {
    kPending,    // planned, downloading
    kPresent,    // committed before we started
    kApplied,    // `key` holds the verified layer, prepared without a parent
    kBlobReady,  // the blob is in the content store; apply it once the parent is committed
    kCommitted,  // committed by us or by a concurrent unpack
  };
  struct Layer {
    image::Descriptor descriptor;
    Digest diff_id = Digest::Sha256Of("");
    State state = State::kPending;
    std::string key;  // our active snapshot, if any
    // kApplied: directories the layer created as parents only (ApplyResult::implicit_dirs).
    std::vector<std::string> implicit_dirs;
    // kApplied as an EROFS image with implicit directories: the image, finished at commit
    // once the lower layers can lend those directories their attributes.
    std::unique_ptr<LayerWriter> unfinished_image;
  };

  std::string NewKey(size_t index) const;
  // The snapshot layer `index` is committed on: "" for the first layer, the destination's base
  // snapshot for the first layer above it, else SnapshotName(index - 1).
  std::string ParentName(size_t index) const;
  // Stat of SnapshotName(index); a committed Info for a layer under the destination's base.
  Result<snapshot::Info> StatLayer(size_t index);
  // `threading`: what the layer's LayerThreadBudget::Slot decided.
  archive::ApplyOptions ApplyOptionsFor(archive::ApplyThreading threading,
                                        const snapshot::ApplyTarget& target,
                                        const image::Descriptor& layer) const;
  // REQUIRES: mutex_ not held. Records the new state of `index` and runs commits.
  Result<void> MarkReady(size_t index, State state, std::string key, uint64_t uncompressed_bytes,
                         std::vector<std::string> implicit_dirs = {},
                         std::unique_ptr<LayerWriter> unfinished_image = nullptr);
  // Commits (and applies from the store) every layer whose predecessors are committed, in
  // order. Only one thread advances at a time; others hand their work to it.
  Result<void> Advance();
  Result<void> CommitApplied(size_t index, const std::string& key,
                             const std::vector<std::string>& implicit_dirs,
                             LayerWriter* unfinished_image);
  // Gives the implicit directories of the active snapshot `key` (its `implicit_dirs`, or those
  // of its `unfinished_image`, which this finishes) the attributes of the committed snapshot
  // `parent`'s layers.
  Result<void> InheritImplicitDirs(size_t index, const std::string& key, const std::string& parent,
                                   const std::vector<std::string>& implicit_dirs,
                                   LayerWriter* unfinished_image);
  // Drops our active snapshot `key` of a layer a concurrent pull committed first.
  Result<void> LoseRace(const std::string& key);
  Result<void> ApplyFromStore(size_t index);
  // Applies the committed blob `digest`, read from the content store, with `apply` into
  // `target`: as an image when the target takes one, unless the layer hardlinks lower layers'
  // files (then as files, which Commit turns into the image).
  Result<archive::ApplyResult> ApplyBlob(const Digest& digest, const archive::ApplyOptions& apply,
                                         const snapshot::ApplyTarget& target) const;
  Result<archive::ApplyResult> ApplyBlobAs(const Digest& digest, const archive::ApplyOptions& apply,
                                           const snapshot::ApplyTarget& target,
                                           LayerForm form) const;
  Result<void> CheckDiffId(size_t index, const Digest& actual) const;
  void Report(size_t index, LayerEvent event, uint64_t uncompressed_bytes = 0);
  // Removes the snapshots this unpack made and has not handed over (best effort: what cannot be
  // removed is left for the snapshotter's Cleanup()).
  void RemoveKeys();
  // Deletes what was applied into the snapshot `key` (its directory's entries, its layer image),
  // keeping the snapshot: on a full disk, this frees the space its removal's metadata
  // transaction needs.
  void DropAppliedFiles(const std::string& key);
  // Holds an active snapshot in the lease and remembers it so that failure paths remove it.
  // Call before preparing it.
  Result<void> TrackKey(std::string key);
  void ForgetKey(const std::string& key);

  snapshot::Snapshotter& snapshotter_;
  content::Store& store_;
  LayerThreadBudget& threads_;
  const UnpackOptions options_;
  const LayerProgressFn progress_;
  pull::PullLease* const lease_;
  bool rebase_ = false;

  // Set by Begin(); read-only afterwards.
  std::vector<Digest> chain_ids_;
  size_t base_layers_ = 0;  // how many lower layers the destination's base snapshot covers

  mutable std::mutex mutex_;
  std::condition_variable advanced_;
  std::vector<Layer> layers_;      // guarded by mutex_
  std::vector<std::string> keys_;  // active snapshots we own, guarded by mutex_
  size_t next_commit_ = 0;         // guarded by mutex_
  bool advancing_ = false;         // guarded by mutex_
  std::optional<Error> failure_;   // guarded by mutex_
  UnpackStats stats_;              // guarded by mutex_
  bool ended_ = false;
};

// Unpacks an image whose layer blobs are all in `store` (no download): for native snapshots,
// for repairs, and when the blobs are already present. Layers already committed are skipped;
// the rest are applied in order onto their parents and committed. Returns the top chain ID and
// fills `stats` if given. kNotFound when a needed blob is not in the store; otherwise the
// errors of Unpacker.
Result<Digest> UnpackImage(content::Store& store, snapshot::Snapshotter& snapshotter,
                           LayerThreadBudget& threads, const image::Manifest& manifest,
                           const image::ImageConfig& config, const UnpackOptions& options = {},
                           UnpackStats* stats = nullptr);

}  // namespace berth::unpack
