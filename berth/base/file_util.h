// File: berth/base/file_util.h
//
// Small filesystem helpers with errno-based errors (ErrnoError). All of them block on disk I/O.
#pragma once

#include <filesystem>
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

// Writes all of `data` to `fd`, retrying short writes and EINTR.
Result<void> WriteAll(int fd, std::string_view data);

// Creates `path` and its parents (mode 0755 for new ones). Succeeds if it exists as a directory.
Result<void> MakeDirectories(const std::filesystem::path& path);

}  // namespace berth
