// File: tools/imagegen/tar_writer.h
//
// TarWriter streams a POSIX.1-2001 (pax) tar archive to a ByteSink: a ustar header per entry,
// preceded by a pax extended header ('x') whenever a field does not fit ustar:
//
//   path > 100 bytes            → "path"
//   link target > 100 bytes     → "linkpath"
//   size ≥ 8 GiB                → "size"
//   uid/gid ≥ 8^7               → "uid" / "gid"
//   user/group name > 32 bytes  → "uname" / "gname"
//   mtime with nanoseconds, negative or ≥ 8^11 → "mtime" ("seconds.fraction")
//   every extended attribute    → "SCHILY.xattr.<name>" (value as raw bytes)
//
// Output is a pure function of the entries: no clock, no host user database, and pax records in
// a fixed order (the fields above, then xattrs sorted by name). The same entries give the same
// bytes, and so the same diffID, on every machine.
//
// Paths are written as given, relative ("etc/passwd") or not, including hostile ones such as
// "../escape" that tests of an unpacker need; directories get a trailing "/" if they lack one.
//
// Sparse files (Entry::sparse_map set) are written in the pax "GNU.sparse 1.0" format, as
// `tar --sparse --format=posix` writes them and Go's archive/tar (umoci, containerd) reads them:
//
//   pax records   GNU.sparse.major=1, GNU.sparse.minor=0, GNU.sparse.name=<path>,
//                 GNU.sparse.realsize=<logical size> (before the other records above; "path"
//                 is never needed, the real name is GNU.sparse.name)
//   ustar name    "<dir>/GNUSparseFile.0/<base>" ("./GNUSparseFile.0/<base>" at the top),
//                 truncated to 100 bytes; size = map blocks + data bytes
//   data          the map: the segment count, then each segment's offset and length, one
//                 decimal number per line, NUL-padded to a multiple of 512 bytes; then the data
//                 of the segments in order, the whole padded to 512
//
// The map is written as given; segments must be sorted, not overlap and lie inside the file.
// Go's archive/tar, libarchive and berth take the data as one packed run and the logical size
// from GNU.sparse.realsize. GNU tar (1.34) is stricter: it reads each segment's data from
// whole 512-byte blocks and ends the file with the last segment, so for it every segment but
// the last needs a length that is a multiple of 512, and a file ending in a hole needs an
// empty segment at its end. FileTree::AddSparseFile lays maps out that way.
//
// Thread safety: one thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "tools/imagegen/byte_sink.h"

namespace berth::imagegen {

enum class EntryType {
  kRegular,
  kDirectory,
  kSymlink,
  kHardlink,
  kCharDevice,
  kBlockDevice,
  kFifo
};

// `length` bytes of data at byte `offset` of a sparse file; the bytes between segments (and
// after the last one, up to the logical size) are holes, read as zeros.
struct SparseSegment {
  uint64_t offset = 0;
  uint64_t length = 0;
  friend bool operator==(const SparseSegment&, const SparseSegment&) = default;
};

// The metadata of one archive member.
struct Entry {
  std::string path;
  EntryType type = EntryType::kRegular;
  // Permission bits, including setuid/setgid/sticky (masked to 07777).
  uint32_t mode = 0644;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string user_name;
  std::string group_name;
  int64_t mtime_seconds = 0;
  uint32_t mtime_nanoseconds = 0;
  // Content length; only regular files have content. For a sparse file, the logical size
  // (holes included).
  uint64_t size = 0;
  // Set for a sparse regular file: where its data is. Its content is then only the segments'
  // data, concatenated in order (the sum of the lengths), not `size` bytes. An empty map is a
  // file that is all hole.
  std::optional<std::vector<SparseSegment>> sparse_map;
  // Target of a symlink (any text) or a hardlink (the path of an earlier entry).
  std::string link_target;
  uint32_t device_major = 0;
  uint32_t device_minor = 0;
  // Extended attributes by full name ("security.capability", "user.comment").
  std::map<std::string, std::string> xattrs;
};

class TarWriter {
 public:
  // `out` must outlive the writer.
  explicit TarWriter(ByteSink& out) : out_(out) {}

  // Starts an entry. For regular files, exactly `entry.size` bytes must follow through
  // WriteData() before the next WriteHeader() or Finish(); for sparse files (which get their
  // map written here) exactly the sum of the segment lengths. kInvalidArgument for an empty
  // path, a nanosecond field ≥ 1e9, a size on a non-regular entry, a sparse map on a
  // non-regular entry, or a map that is unsorted, overlapping or outside `entry.size`;
  // kFailedPrecondition if the previous entry's content is incomplete.
  Result<void> WriteHeader(const Entry& entry);
  // Appends content to the current entry. kInvalidArgument if it would exceed the entry's size.
  Result<void> WriteData(std::string_view data);
  // Writes a whole entry. For regular files the size is content.size() (entry.size is
  // ignored), except sparse files: entry.size is their logical size and `content` the data of
  // their segments, concatenated. Other types must pass empty content.
  Result<void> WriteEntry(const Entry& entry, std::string_view content = {});
  // Pads the last entry, writes the two zero blocks that end an archive and finishes `out`.
  Result<void> Finish();

 private:
  Result<void> CloseEntry();

  ByteSink& out_;
  std::string current_path_;
  uint64_t remaining_ = 0;
  uint64_t written_in_entry_ = 0;
  bool finished_ = false;
};

// Encodes one pax extended-header record, "<length> <key>=<value>\n" (exposed for tests).
std::string PaxRecord(std::string_view key, std::string_view value);

}  // namespace berth::imagegen
