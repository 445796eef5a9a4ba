// File: berth/service/disk_admission.h
//
// Disk admission: before a pull fetches its first layer, estimate the space the pull will take
// and refuse it up front (kResourceExhausted) when the filesystem cannot hold it, instead of
// filling the disk and failing halfway. A disk that fills anyway (other writers, concurrent
// pulls, an estimate too low) still fails the pull cleanly with ENOSPC's kResourceExhausted.
//
// The estimate, per layer of the image:
//   - chain ID already committed as a snapshot: nothing (the puller skips the layer);
//   - otherwise the unpacked layer: its compressed size × the unpack ratio (below);
//   - and, unless its blob is in the content store, the blob: its compressed size minus what
//     an ingest of it already holds (a resumed download).
// Blobs of layers discarded after unpack (pull.discard_unpacked_layers) are counted too: they
// are on disk until their layer is unpacked.
//
// The unpack ratio is the disk space the unpacked layers took (the snapshotter's usage of each
// newly committed layer, blocks as allocated) over their compressed sizes, summed over the
// pulls this process completed, with a prior: before anything is observed it is
// kDefaultUnpackRatio, and the prior weighs as much as kRatioPriorBytes of compressed layers
// observed at that ratio, so that one tiny or freakishly compressible layer does not swing it.
// On the native snapshotter each layer is a full copy of the tree below it, and the observed
// ratio reflects that.
//
// The space available is statvfs's f_bavail × f_frsize of the filesystem holding the content
// store and of the one holding the snapshot root, less a reserve on each: a FreeSpaceReserve,
// by default kReserveFraction of the filesystem's size (berthd and the CLI pass the config's
// pull.min_free_space, which the unpacker also keeps while it writes layers). On one filesystem the
// blob and unpacked estimates are compared with it together; on two, each with its own. A directory
// that cannot be measured is not checked. Concurrent pulls are each admitted against the free space
// of the moment.
//
// Thread safety: DiskAdmission may be used from many threads at once; the free functions are
// pure.
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "berth/content/store.h"
#include "berth/image/manifest.h"
#include "berth/snapshot/snapshotter.h"

namespace berth::service {

// The unpack ratio assumed before any layer was observed (gzip commonly shrinks layers by half
// to two thirds).
inline constexpr double kDefaultUnpackRatio = 2.0;
// How many compressed bytes the default ratio counts as, in the running ratio.
inline constexpr int64_t kRatioPriorBytes = int64_t{64} << 20;
// Part of each filesystem's size a pull may not take.
inline constexpr double kReserveFraction = 0.01;

// The free space a pull must leave on a filesystem: the larger of `bytes` and `fraction` of
// the filesystem's size.
struct FreeSpaceReserve {
  uint64_t bytes = 0;
  double fraction = kReserveFraction;

  uint64_t For(uint64_t filesystem_size) const;
};

// What is known about one layer before the pull fetches it.
struct LayerState {
  int64_t compressed_size = 0;  // the manifest's size for the blob
  bool blob_stored = false;     // the blob is in the content store
  int64_t ingested = 0;         // bytes an ingest of the blob already holds
  bool unpacked = false;        // its chain ID is a committed snapshot
};

struct SpaceEstimate {
  uint64_t blob_bytes = 0;      // to download into the content store
  uint64_t unpacked_bytes = 0;  // to write into the snapshotter
  double ratio = kDefaultUnpackRatio;
};

// The running unpack ratio from `compressed` bytes of layers observed to take `unpacked` bytes
// once unpacked (see the file comment). Both 0: kDefaultUnpackRatio.
double UnpackRatio(int64_t compressed, int64_t unpacked);

// The space a pull of `layers` needs, with unpacked sizes estimated at `ratio`.
SpaceEstimate EstimateSpace(std::span<const LayerState> layers, double ratio);

// One filesystem, as statvfs and stat see it.
struct FilesystemSpace {
  std::filesystem::path path;  // the directory measured (berth's, not the mountpoint)
  uint64_t device = 0;         // st_dev: the same for two directories on one filesystem
  uint64_t available = 0;      // f_bavail × f_frsize
  uint64_t size = 0;           // f_blocks × f_frsize
};

// Measures the filesystem holding `directory`. Errors: the errno of statvfs or stat.
Result<FilesystemSpace> MeasureFilesystem(const std::filesystem::path& directory);

// The decision. `content` holds the content store and `snapshots` the snapshot root (either
// may be absent: not checked). Success when the estimate fits on each filesystem with
// `reserve` kept; otherwise kResourceExhausted saying what the pull needs, how much is free
// where, and what to do about it.
Result<void> CheckSpace(const SpaceEstimate& estimate,
                        const std::optional<FilesystemSpace>& content,
                        const std::optional<FilesystemSpace>& snapshots,
                        const FreeSpaceReserve& reserve = {});

// Admits pulls for one ImageService and learns the unpack ratio from the pulls it admitted.
class DiskAdmission {
 public:
  // What Admit found about one pull, for Learn once the pull succeeded.
  struct Admitted {
    std::vector<int64_t> compressed_sizes;  // of the layers that were not unpacked
    std::vector<std::string> chain_ids;     // their chain IDs, in the same order
  };

  // `store` and `snapshotter` must outlive this. `snapshot_root` empty: the snapshots are
  // taken to live on the content store's filesystem.
  DiskAdmission(content::Store& store, snapshot::Snapshotter& snapshotter,
                std::filesystem::path snapshot_root, FreeSpaceReserve reserve = {})
      : store_(store),
        snapshotter_(snapshotter),
        snapshot_root_(std::move(snapshot_root)),
        reserve_(reserve) {}

  // Estimates the pull of `manifest` (with `config`'s diffIDs; REQUIRES: one per layer) and
  // checks it against the free space (CheckSpace's errors). Fills `admitted`. Reads the content
  // store's ingests and the snapshotter's metadata; blocks on disk I/O.
  Result<void> Admit(const image::Manifest& manifest, const image::ImageConfig& config,
                     Admitted& admitted);

  // After the pull `admitted` describes succeeded: adds its newly unpacked layers' disk usage to
  // the running ratio. Layers whose usage cannot be read are left out.
  void Learn(const Admitted& admitted);

  double ratio() const;

 private:
  content::Store& store_;
  snapshot::Snapshotter& snapshotter_;
  const std::filesystem::path snapshot_root_;
  const FreeSpaceReserve reserve_;
  mutable std::mutex mutex_;
  int64_t observed_compressed_ = 0;  // guarded by mutex_
  int64_t observed_unpacked_ = 0;    // guarded by mutex_
};

}  // namespace berth::service
