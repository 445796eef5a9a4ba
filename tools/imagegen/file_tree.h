// File: tools/imagegen/file_tree.h
//
// Layer sources: what goes into a layer tar.
//
// - FileTree is an in-memory list of entries with exact, known content, for tests and demos:
//   regular files (also sparse ones: data segments and holes), directories, symlinks,
//   hardlinks, devices, fifos, xattrs, whiteouts.
//   Entries are written in the order they were added (so a test controls ordering, e.g. that a
//   hardlink follows its target) and nothing is implied: parent directories are not invented.
// - DirectoryTree walks a real directory and streams it: entries are visited depth first with
//   each directory's children in byte order, and file content is read from disk in chunks while
//   the tar is written, so a layer of any size needs bounded memory. Holes in files on disk
//   are not detected: they are archived as zeros, in ordinary entries.
//
//   FileTree tree;
//   tree.AddDirectory("etc")
//       .AddFile("etc/os-release", "ID=berth\n")
//       .AddFile("hello.sh", "#!/bin/sh\necho hello\n", {.mode = 0755})
//       .AddSymlink("bin/hello", "../hello.sh")
//       .AddSparseFile("var/disk.img", 8 << 20, {{.offset = 0, .data = "MBR"}})
//       .AddWhiteout("etc/motd");
//
// Thread safety: FileTree is a value type. A DirectoryTree may be written from one thread at a
// time; writing it reads the disk (blocking I/O).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "berth/base/result.h"
#include "tools/imagegen/tar_writer.h"

namespace berth::imagegen {

// Anything that can write itself as the entries of a tar. The caller finishes the TarWriter.
class LayerSource {
 public:
  virtual ~LayerSource() = default;
  // Writes every entry to `tar`. Errors come from the source (disk) or from `tar`'s sink.
  virtual Result<void> WriteTo(TarWriter& tar) const = 0;
};

// Per-entry attributes for FileTree's Add* helpers.
struct Attributes {
  // Unset: 0644 for files, whiteouts and devices, 0755 for directories, 0777 for symlinks.
  std::optional<uint32_t> mode;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string user_name;
  std::string group_name;
  int64_t mtime_seconds = 0;
  uint32_t mtime_nanoseconds = 0;
  std::map<std::string, std::string> xattrs;
};

// The data of a sparse file at byte `offset`; what no SparseData covers is a hole.
struct SparseData {
  uint64_t offset = 0;
  std::string data;
};

// The whiteout prefix and the opaque-directory marker of the OCI layer spec.
inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOpaqueWhiteout = ".wh..wh..opq";

class FileTree final : public LayerSource {
 public:
  struct Node {
    Entry entry;
    // Regular files only; for sparse files the data of entry.sparse_map's segments, in order.
    std::string content;
  };

  FileTree& AddFile(std::string path, std::string content, Attributes attributes = {});
  // A regular file of `logical_size` bytes that is all hole except `segments`, written as a
  // GNU.sparse 1.0 entry (see tar_writer.h). Segments must be in order, not overlap and end by
  // `logical_size` (WriteTo() fails with kInvalidArgument otherwise); no segments at all is a
  // file that is one hole. The map is laid out as GNU tar writes it, which every reader (GNU
  // tar, Go's archive/tar, libarchive, berth) extracts alike: empty segments are dropped,
  // segments but the last are extended with zeros to whole 512-byte blocks (merged where they
  // meet) and a file that ends in a hole gets an empty segment at its end. The logical content
  // is unchanged. To write a map exactly as given, use Add() with Entry::sparse_map.
  FileTree& AddSparseFile(std::string path, uint64_t logical_size, std::vector<SparseData> segments,
                          Attributes attributes = {});
  FileTree& AddDirectory(std::string path, Attributes attributes = {});
  FileTree& AddSymlink(std::string path, std::string target, Attributes attributes = {});
  // `target` is the path of an entry added earlier.
  FileTree& AddHardlink(std::string path, std::string target, Attributes attributes = {});
  FileTree& AddCharDevice(std::string path, uint32_t major, uint32_t minor,
                          Attributes attributes = {});
  FileTree& AddBlockDevice(std::string path, uint32_t major, uint32_t minor,
                           Attributes attributes = {});
  FileTree& AddFifo(std::string path, Attributes attributes = {});
  // Marks `path` as deleted relative to lower layers: "etc/motd" becomes "etc/.wh.motd".
  FileTree& AddWhiteout(std::string_view path, Attributes attributes = {});
  // Hides everything lower layers have under `directory`: adds "<directory>/.wh..wh..opq".
  FileTree& AddOpaqueWhiteout(std::string_view directory, Attributes attributes = {});
  // Adds a fully specified entry; entry.size is set from `content` for regular files that are
  // not sparse (a sparse entry keeps its logical size; `content` is its segments' data).
  FileTree& Add(Entry entry, std::string content = {});

  const std::vector<Node>& nodes() const { return nodes_; }
  bool empty() const { return nodes_.empty(); }

  Result<void> WriteTo(TarWriter& tar) const override;

 private:
  FileTree& AddNode(std::string path, EntryType type, uint32_t default_mode, Attributes attributes,
                    std::string content = {}, std::string link = {});
  std::vector<Node> nodes_;
};

enum class UnreadablePolicy {
  kFail,  // An entry that cannot be read fails the walk (kPermissionDenied, …).
  kSkip,  // Files and directories that cannot be opened are left out.
};

struct DirectoryTreeOptions {
  // Prepended to every path in the archive, e.g. "usr/" to place the tree under /usr.
  std::string path_prefix;
  // Overrides for ownership and mtime; unset keeps what lstat() reports. Setting all three
  // makes the layer independent of who created the files and when.
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<int64_t> mtime_seconds;
  // Record extended attributes (llistxattr) as SCHILY.xattr records.
  bool include_xattrs = true;
  UnreadablePolicy unreadable = UnreadablePolicy::kFail;
  // The read size used to stream file content.
  size_t read_chunk_bytes = 1 << 20;
};

class DirectoryTree final : public LayerSource {
 public:
  // `root` is not read until WriteTo(). Its own entry is not written, only what is inside it.
  explicit DirectoryTree(std::filesystem::path root, DirectoryTreeOptions options = {})
      : root_(std::move(root)), options_(std::move(options)) {}

  // Walks the tree and streams it into `tar`. Files with several links become one regular
  // entry and hardlinks to it; sockets are skipped. kNotFound if `root` is missing,
  // kAborted if a file changes size while it is read, errno-mapped codes for other I/O errors.
  Result<void> WriteTo(TarWriter& tar) const override;

 private:
  std::filesystem::path root_;
  DirectoryTreeOptions options_;
};

}  // namespace berth::imagegen
