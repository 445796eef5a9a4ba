// File: berth/snapshot/cleaner.h
//
// Cleaner is the maintenance side of a snapshotter that keeps its snapshots in directories,
// apart from the Snapshotter lifecycle the unpacker and the runtime use (as containerd's
// optional snapshots.Cleaner is): the directories that no snapshot owns (leftovers of crashes or
// of a failed Remove), and the snapshots whose directory is gone. Garbage collection (berth/gc)
// and `berth check` (service::ImageService's Check and Recover) take it. LocalSnapshotter, and
// so the overlay and native snapshotters, implement it beside Snapshotter.
//
// Thread safety: implementations are safe for concurrent use by multiple threads, also with the
// Snapshotter calls of the same object.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "berth/base/result.h"

namespace berth::snapshot {

class Cleaner {
 public:
  virtual ~Cleaner() = default;

  // Deletes directories under the root that no snapshot refers to and returns their paths.
  // Safe at any time.
  virtual Result<std::vector<std::filesystem::path>> Cleanup() = 0;

  // The directories Cleanup() would delete, without deleting them (for `berth check`).
  virtual Result<std::vector<std::filesystem::path>> FindOrphans() = 0;

  // Keys of the snapshots whose layer is gone or damaged on disk (removed or truncated behind
  // the snapshotter's back: a missing directory, a missing or truncated erofs layer image):
  // their records are stale, and whatever is built on them is broken.
  virtual Result<std::vector<std::string>> FindMissing() = 0;
};

}  // namespace berth::snapshot
