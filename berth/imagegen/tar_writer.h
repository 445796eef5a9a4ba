// File: berth/imagegen/tar_writer.h
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
// Sparse files are not supported (they are written as ordinary files, holes as zeros).
//
// Thread safety: one thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "berth/base/result.h"
#include "berth/imagegen/byte_sink.h"

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
  // Content length; only regular files have content.
  uint64_t size = 0;
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
  // WriteData() before the next WriteHeader() or Finish(). kInvalidArgument for an empty path,
  // a nanosecond field ≥ 1e9, or a size on a non-regular entry; kFailedPrecondition if the
  // previous entry's content is incomplete.
  Result<void> WriteHeader(const Entry& entry);
  // Appends content to the current entry. kInvalidArgument if it would exceed the entry's size.
  Result<void> WriteData(std::string_view data);
  // Writes a whole entry. For regular files the size is content.size() (entry.size is
  // ignored); other types must pass empty content.
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
