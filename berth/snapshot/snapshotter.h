// File: berth/snapshot/snapshotter.h
//
// Snapshotter is the seam between the unpacker (and the runtime) and the filesystem that stores
// image layers. It uses containerd's vocabulary and lifecycle, so containerd users recognise it:
//
//   - A snapshot is a directory tree stacked on an optional parent snapshot.
//   - `key` names an active snapshot or a view: a snapshot still being written, or a read-only
//     look at a parent. `name` names a committed snapshot: immutable, and the only kind that
//     can be a parent. Keys and names share one namespace.
//   - Kinds: kActive (read-write, created by Prepare), kView (read-only, created by View),
//     kCommitted (read-only, created by Commit of an active snapshot).
//
// # Importing a layer
//
//   The unpacker applies a layer diff on top of the snapshot of the layers below it (named by
//   their chain ID) and commits the result under the new chain ID:
//
//     Prepare("extract-<random>-<chainID(L1..n)>", chainID(L1..n-1))   // parent "" for L1
//     GetApplyTarget(key) -> write the layer's files there (or mount Mounts(key) and write there)
//     Commit(chainID(L1..n), key)                                      // key is gone now
//
//   If the apply fails, Remove(key) drops the active snapshot. Because chain IDs are names,
//   Stat(chainID) tells whether a layer stack is already unpacked.
//
// # Running a container
//
//     Prepare("container-<id>", chainID(image))   // read-write layer on top of the image
//     Mounts("container-<id>")                      // hand these to the runtime
//     …
//     Remove("container-<id>")
//
//   View(key, parent) gives a read-only look instead (inspecting an image's rootfs).
//
// # Errors
//
//   Prepare/View/Commit of a key or name that exists: kAlreadyExists.
//   Any operation on an unknown key: kNotFound. A parent that does not exist: kNotFound.
//   A parent that is not committed: kFailedPrecondition.
//   Commit of a view or a committed snapshot: kFailedPrecondition.
//   Mounts/ApplyTarget of a committed snapshot: kFailedPrecondition (View it instead).
//   Remove of a snapshot that has children: kFailedPrecondition.
//   An empty key or name: kInvalidArgument. A full disk: kResourceExhausted.
//
// # Crash safety
//
//   Every change is one metadata transaction; directories are created before it commits and
//   removed after, so a crash leaves at worst unreferenced directories, which an on-disk
//   snapshotter's Cleaner::Cleanup() deletes (cleaner.h: the maintenance side, kept apart).
//   A snapshot reported by Stat/Walk always has its directory.
//
// Thread safety: implementations are safe for concurrent use by multiple threads. One process
// owns a snapshotter root at a time (a second Open of the same root fails with kUnavailable).
// Mounts returned by Mounts() must be unmounted before Remove() of that snapshot.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "berth/snapshot/mount.h"

namespace berth::snapshot {

enum class Kind { kView, kActive, kCommitted };

// Active snapshots an unpack writes layers into start with this key prefix. They are scratch:
// garbage collection removes those no running pull's lease holds. Any other active snapshot or
// view (a `berth mount`, a container's) is kept, and so is everything under it.
inline constexpr std::string_view kUnpackScratchPrefix = "extract-";

// Snapshots whose key (or name) starts with this prefix belong to containerd: berthd's
// containerd Snapshots API (berth/containerd/snapshots_service.h) stores containerd's key K as
// kContainerdKeyPrefix + K and shows containerd only those snapshots, without the prefix. berth's
// garbage collection (berth/gc) never removes them, committed or not; only containerd does,
// through that API's Remove. Their parents carry the prefix too, so a containerd chain never
// rests on a snapshot berth may collect.
inline constexpr std::string_view kContainerdKeyPrefix = "containerd/";

// "view", "active", "committed".
std::string_view KindName(Kind kind);

using Labels = std::map<std::string, std::string>;

struct Info {
  Kind kind = Kind::kActive;
  std::string name;    // the key, or the name for a committed snapshot
  std::string parent;  // the parent's name; empty for none
  Labels labels;
  std::chrono::system_clock::time_point created;
  std::chrono::system_clock::time_point updated;

  friend bool operator==(const Info&, const Info&) = default;
};

// A change to one snapshot's labels (Snapshotter::UpdateLabels).
struct LabelUpdate {
  enum class Mode {
    kReplace,  // the labels become exactly `set` (`remove` must be empty)
    kMerge,    // `set` is added, overwriting labels of the same names; `remove` is deleted
  };
  Mode mode = Mode::kMerge;
  Labels set;
  std::vector<std::string> remove;  // names; a name that is not there is ignored
};

// Disk space of a snapshot's own layer (not its parents'; the native snapshotter's layer is a
// full copy, so there it is the whole tree): allocated bytes (st_blocks * 512)
// and inodes, each inode counted once however many hard links it has, including the top
// directory. Exact for committed snapshots (measured at Commit); measured on demand for others.
struct Usage {
  int64_t size = 0;
  int64_t inodes = 0;

  friend bool operator==(const Usage&, const Usage&) = default;
};

// How deletions of lower-layer files must be recorded in an ApplyTarget directory.
enum class WhiteoutStyle {
  // overlayfs: a deleted path becomes a character device 0/0 with the same name, and a directory
  // whose lower contents are replaced gets the xattr ApplyTarget::opaque_xattr = "y".
  kOverlay,
  // The directory already holds the full parent tree: delete the path (for an opaque directory,
  // delete its existing contents).
  kDelete,
};

// Where to write a layer into an active snapshot without mounting anything.
struct ApplyTarget {
  std::filesystem::path directory;
  WhiteoutStyle whiteouts = WhiteoutStyle::kOverlay;
  // For kOverlay: "trusted.overlay.opaque", or "user.overlay.opaque" when mounted with
  // userxattr. Empty for kDelete.
  std::string opaque_xattr;
  // For kOverlay: the layer directories of the snapshot's parents, nearest parent first (the
  // order of overlayfs's lowerdir=), which a layer's hard links and implicit directories may
  // need to read. Empty without a parent, and for kDelete (`directory` already holds the
  // parents' files).
  std::vector<std::filesystem::path> lower_dirs;
  // Where the layer may be written as one EROFS image (erofs::ImageWriter) instead of as files
  // in `directory`, which must then stay empty. The writer writes under another name in the
  // same directory and renames the image here only once it is complete (Finish() succeeded);
  // Commit then takes it as the layer and makes it durable as it does a directory's files.
  // Empty for snapshotters that store directories (overlayfs, native): write into `directory`.
  std::filesystem::path layer_image;
};

class Snapshotter {
 public:
  virtual ~Snapshotter() = default;

  // Creates an active snapshot `key` on top of the committed snapshot `parent` ("" for none)
  // and returns the mounts that present it read-write. Errors: see the file comment.
  virtual Result<std::vector<Mount>> Prepare(std::string_view key, std::string_view parent,
                                             const Labels& labels = {}) = 0;

  // Like Prepare, but the snapshot is a read-only view of `parent` that can never be committed.
  virtual Result<std::vector<Mount>> View(std::string_view key, std::string_view parent,
                                          const Labels& labels = {}) = 0;

  // The mounts of an active snapshot or view (the same as Prepare/View returned).
  // kFailedPrecondition for a committed snapshot; kResourceExhausted when the parent chain is
  // too long to express in one mount (see the implementation).
  virtual Result<std::vector<Mount>> Mounts(std::string_view key) = 0;

  // Turns the active snapshot `key` into the committed snapshot `name` with `labels` (which
  // replace the active snapshot's labels). `key` no longer exists afterwards. The snapshot's
  // contents must not change after this (unmount it first).
  virtual Result<void> Commit(std::string_view name, std::string_view key,
                              const Labels& labels = {}) = 0;

  // Whether CommitRebased() works: true when a snapshot's layer directory holds only its own
  // files (overlayfs), false when it holds a copy of the parent's tree (native).
  virtual bool SupportsRebase() const = 0;

  // Commit with the parent given late, like containerd's "rebase" capability: the active
  // snapshot `key`, prepared with NO parent, becomes the committed snapshot `name` on top of the
  // committed snapshot `parent`. This lets an unpacker write every layer of an image into its
  // own directory at once and chain them as the lower layers get committed. Errors: as Commit;
  // kFailedPrecondition when !SupportsRebase(), when `key` already has a parent, or when
  // `parent` is not committed; kNotFound for a missing `parent`. An empty `parent` commits as
  // Commit() does.
  virtual Result<void> CommitRebased(std::string_view name, std::string_view key,
                                     std::string_view parent, const Labels& labels = {}) = 0;

  // Removes a snapshot of any kind and its directory. kFailedPrecondition when it has children.
  virtual Result<void> Remove(std::string_view key) = 0;

  virtual Result<Info> Stat(std::string_view key) = 0;

  // Changes the labels of the snapshot `key` (any kind) as `update` says, in one metadata
  // transaction, sets its updated time, and returns its Info afterwards. Its kind, parent,
  // contents and created time stay. kNotFound for an unknown key; kInvalidArgument for an empty
  // label name, or for kReplace with names in `remove`.
  virtual Result<Info> UpdateLabels(std::string_view key, const LabelUpdate& update) = 0;

  // Gives the committed snapshot `name` the name `new_name` and replaces its labels with
  // `labels`, in one metadata transaction, and sets its updated time. Its contents, parent and
  // created time stay, and so do its children, which name it by `new_name` from then on. This is
  // how a layer berth unpacked for containerd becomes containerd's (berth/containerd's remote
  // snapshots). kNotFound for an unknown `name`; kAlreadyExists when `new_name` exists;
  // kFailedPrecondition when `name` is not committed; kInvalidArgument for an empty name.
  virtual Result<void> Rename(std::string_view name, std::string_view new_name,
                              const Labels& labels) = 0;

  virtual Result<Usage> GetUsage(std::string_view key) = 0;

  // Calls `visit` for every snapshot (any order). A failing visit stops the walk and its error
  // is returned. `visit` runs without internal locks held, so it may call the snapshotter.
  virtual Result<void> Walk(const std::function<Result<void>(const Info&)>& visit) = 0;

  // Where the unpacker writes a layer for the active snapshot `key`, how it must record
  // whiteouts, and the parents' layer directories beneath it. kFailedPrecondition for views and
  // committed snapshots.
  virtual Result<ApplyTarget> GetApplyTarget(std::string_view key) = 0;
};

}  // namespace berth::snapshot
