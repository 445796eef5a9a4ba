// File: berth/base/durability.h
//
// Durability is how hard berth pushes what a pull writes (blobs, unpacked layers, their
// metadata) to stable storage before it reports a step done. It is one setting (the config's
// pull.sync) that each storage component honours with its own mechanism:
//
//   content::Store       fdatasync each blob and fsync its directory before the blob is visible
//   LocalSnapshotter     syncfs(2) a snapshot before its metadata row says committed, fsync the
//                        snapshots directory, SQLite synchronous=FULL
//   unpack / archive     with kFile, fsync every file as it is written (archive::SyncPolicy)
//
// A component that has no per-file step treats kLayer and kFile alike. The mechanisms stay with
// their components: archive::SyncPolicy (when and how a tree is synced) and
// sqlite::Synchronous (a PRAGMA value) are not durability levels and are chosen from this one.
//
// Thread safety: a value type.
#pragma once

#include <string_view>

namespace berth {

enum class Durability {
  // Nothing is synced. A crash or power loss may lose or truncate recent writes while the
  // metadata says they happened (they are pulled again). For tests and throwaway roots.
  kNone,
  // Each unit is synced once before it is recorded: a blob at commit, a layer (snapshot) at
  // commit. The default.
  kLayer,
  // kLayer, and every file is also fsynced as it is written (slowest; for filesystems on which
  // syncfs is not reliable).
  kFile,
};

// The config spelling: "none", "layer", "file".
constexpr std::string_view DurabilityName(Durability durability) {
  switch (durability) {
    case Durability::kNone:
      return "none";
    case Durability::kLayer:
      return "layer";
    case Durability::kFile:
      return "file";
  }
  return "layer";
}

}  // namespace berth
