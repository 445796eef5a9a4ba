// File: berth/base/file_util.h
//
// Small filesystem helpers with errno-based errors (ErrnoError). All of them block on disk I/O.
#pragma once

#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>

#include "berth/base/result.h"

namespace berth {

// Reads a whole file. kNotFound when it does not exist; kResourceExhausted when it is larger
// than `max_bytes`.
Result<std::string> ReadFile(const std::filesystem::path& path, size_t max_bytes = 64 << 20);

// Writes `data` to `path` so that a crash leaves either the old file or the new one: writes a
// temp file in the same directory, fsyncs it, renames it over `path`, then fsyncs the directory.
Result<void> WriteFileAtomically(const std::filesystem::path& path, std::string_view data,
                                 unsigned mode = 0644);

// fsync(2) of the directory `directory`, making the entries created, renamed or removed in it
// durable. Returns the errno-based error of open or fsync (kNotFound when it does not exist),
// reading "fsync directory <directory>: <reason>".
Result<void> SyncDirectory(const std::filesystem::path& directory);

// Writes all of `data` to `fd`, retrying short writes and EINTR.
Result<void> WriteAll(int fd, std::string_view data);

// Creates `path` and its parents (mode 0755 for new ones). Succeeds if it exists as a directory.
Result<void> MakeDirectories(const std::filesystem::path& path);

// Copies the data of the regular file open as `in` (readable) into the empty file open as `out`
// (writable), from offset 0 whatever the file positions. Shares extents (FICLONE) where the
// filesystem can; otherwise copies only the data regions SEEK_DATA/SEEK_HOLE report, in the
// kernel (copy_file_range) or by pread/pwrite, and sets the size last: holes stay holes, a
// trailing one too. Errors name `in_name` or `out_name`.
Result<void> CopyFileData(int in, int out, const std::filesystem::path& in_name,
                          const std::filesystem::path& out_name);

// The extended attributes of `path` by name. `follow_symlinks` false (llistxattr & co.) reads
// a symlink's own; true is for /proc/self/fd/N paths of open files. A filesystem without xattrs
// (ENOTSUP) gives none; an attribute removed while reading is left out.
Result<std::map<std::string, std::string>> ReadXattrs(const std::filesystem::path& path,
                                                      bool follow_symlinks);

// Copies every extended attribute of `source` onto `destination`. `follow_symlinks` false
// (llistxattr & co.) acts on symlinks themselves; true is for /proc/self/fd/N paths of open
// files. A filesystem without xattrs (ENOTSUP on the source) is not an error.
Result<void> CopyXattrs(const std::filesystem::path& source,
                        const std::filesystem::path& destination, bool follow_symlinks);

}  // namespace berth
