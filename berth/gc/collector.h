// File: berth/gc/collector.h
//
// Collect is berth's garbage collector: mark and sweep over the content store and a snapshotter,
// from the roots the metadata database and the snapshotter hold.
//
// Roots, and what each keeps (marking):
//   - every image record: its target blob; a manifest's config and layers; an index's child
//     manifests that are in the store, and theirs; the config's chain IDs as committed snapshots
//     (each with its parents);
//   - every lease that has not expired (pull/pull_lease.h): its blobs, its committed snapshots
//     (with parents), its active snapshots;
//   - every active snapshot or view that is not unpack scratch (snapshot::kUnpackScratchPrefix):
//     a `berth mount`, a container; with its parents;
//   - every snapshot containerd owns (key under snapshot::kContainerdKeyPrefix, made through
//     berthd's containerd Snapshots API), committed or not, with its parents: containerd
//     removes those itself.
// A blob that cannot be read or parsed while marking is kept, and so is everything it cannot
// tell about; the report says so.
//
// Sweeping, in this order: leases whose expiry has passed; snapshots nothing marked (children
// before parents); blobs nothing marked; ingests whose expected digest nothing marked (an ingest
// a writer holds is skipped: it is in use); directories under the snapshotter's root that no
// snapshot owns (snapshot::Cleaner::Cleanup).
//
// Concurrency: Collect itself takes no lock. Whoever lets pulls run meanwhile must make sure a
// pull's lease records what it holds before Collect reads the leases, or after Collect ends
// (the image service serialises both with one reader-writer lock).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "berth/base/result.h"
#include "berth/content/store.h"
#include "berth/metadata/metadata_db.h"
#include "berth/snapshot/cleaner.h"
#include "berth/snapshot/snapshotter.h"

namespace berth::gc {

struct CollectOptions {
  // Report what would be removed, remove nothing (expired leases are not deleted, so
  // CollectReport::expired_leases stays 0; they still keep nothing).
  bool dry_run = false;
  std::chrono::system_clock::time_point now = std::chrono::system_clock::now();
  // A named image's layer blob is not kept once the layer is a committed snapshot (config
  // pull.discard_unpacked_layers). Blobs a lease holds are kept regardless.
  bool discard_unpacked_layers = false;
  // Nothing else uses the store (start-up, the one process holding the root's lock): an ingest
  // directory without data is removed whatever its age (see content::Store::RemoveIngest).
  bool exclusive = false;
};

struct Freed {
  int64_t count = 0;
  // Disk bytes: blobs, allocated blocks (as du counts them); snapshots, Usage::size (allocated
  // bytes of the layer directory); ingests, the bytes received.
  int64_t bytes = 0;
};

struct CollectReport {
  Freed blobs;
  Freed snapshots;
  Freed ingests;
  Freed orphan_directories;  // count only
  int64_t expired_leases = 0;
  // One line per removed (or, in a dry run, removable) thing: "blob sha256:…", "snapshot …",
  // "ingest …", "directory …".
  std::vector<std::string> removed;
  // Things marking could not see through (an unreadable manifest); they are kept.
  std::vector<std::string> warnings;

  int64_t total_bytes() const {
    return blobs.bytes + snapshots.bytes + ingests.bytes + orphan_directories.bytes;
  }
};

// `cleaner` is the maintenance side of `snapshotter` (the same object for the on-disk
// snapshotters): it finds and deletes the directories no snapshot owns. Errors: the database's,
// the store's, the snapshotter's Walk and the cleaner's, the code unchanged, with one context
// frame naming the phase ("garbage collection: read leases"); a directory Cleanup cannot delete
// fails the collection, after the other sweeps have run. A snapshot, blob or ingest whose
// removal fails is logged and listed in warnings, not returned (the next collection retries it).
Result<CollectReport> Collect(content::Store& store, snapshot::Snapshotter& snapshotter,
                              snapshot::Cleaner& cleaner, metadata::MetadataDb& db,
                              const CollectOptions& options = {});

}  // namespace berth::gc
