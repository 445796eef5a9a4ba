// File: tools/imagegen/tar_reader_for_test.h
//
// Test helper: reads a tar (optionally compressed) back with libarchive into plain values, so
// tests check the generator's output with an independent implementation.
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/c_handle.h"
#include "berth/base/result.h"

namespace berth::imagegen::testing {

struct ReadEntry {
  std::string path;
  unsigned file_type = 0;  // AE_IFREG, AE_IFDIR, …
  unsigned mode = 0;       // Permission bits.
  int64_t uid = 0;
  int64_t gid = 0;
  std::string user_name;
  std::string group_name;
  int64_t mtime_seconds = 0;
  long mtime_nanoseconds = 0;
  int64_t size = 0;
  std::string symlink;
  std::string hardlink;
  unsigned device_major = 0;
  unsigned device_minor = 0;
  std::map<std::string, std::string> xattrs;
  std::string content;
};

using UniqueArchiveReader = UniqueHandle<::archive, archive_read_free>;

// Reads every entry of `bytes` (tar, tar.gz or tar.zst). Fails with kDataLoss on a bad archive.
inline Result<std::vector<ReadEntry>> ReadTar(std::string_view bytes) {
  UniqueArchiveReader reader(archive_read_new());
  archive_read_support_format_tar(reader.get());
  archive_read_support_filter_gzip(reader.get());
  archive_read_support_filter_zstd(reader.get());
  if (archive_read_open_memory(reader.get(), bytes.data(), bytes.size()) != ARCHIVE_OK) {
    return Fail(ErrorCode::kDataLoss, archive_error_string(reader.get()));
  }
  std::vector<ReadEntry> entries;
  archive_entry* entry = nullptr;
  while (true) {
    int rc = archive_read_next_header(reader.get(), &entry);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK) {
      const char* message = archive_error_string(reader.get());
      return Fail(ErrorCode::kDataLoss, message ? message : "archive_read_next_header failed");
    }
    ReadEntry read;
    read.path = archive_entry_pathname(entry);
    read.file_type = archive_entry_filetype(entry);
    read.mode = archive_entry_perm(entry);
    read.uid = archive_entry_uid(entry);
    read.gid = archive_entry_gid(entry);
    if (const char* name = archive_entry_uname(entry)) read.user_name = name;
    if (const char* name = archive_entry_gname(entry)) read.group_name = name;
    read.mtime_seconds = archive_entry_mtime(entry);
    read.mtime_nanoseconds = archive_entry_mtime_nsec(entry);
    read.size = archive_entry_size(entry);
    if (const char* target = archive_entry_symlink(entry)) read.symlink = target;
    if (const char* target = archive_entry_hardlink(entry)) read.hardlink = target;
    read.device_major = archive_entry_rdevmajor(entry);
    read.device_minor = archive_entry_rdevminor(entry);
    archive_entry_xattr_reset(entry);
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    while (archive_entry_xattr_next(entry, &name, &value, &size) == ARCHIVE_OK) {
      read.xattrs[name] = std::string(static_cast<const char*>(value), size);
    }
    char buffer[65536];
    while (true) {
      la_ssize_t got = archive_read_data(reader.get(), buffer, sizeof(buffer));
      if (got < 0) return Fail(ErrorCode::kDataLoss, archive_error_string(reader.get()));
      if (got == 0) break;
      read.content.append(buffer, static_cast<size_t>(got));
    }
    entries.push_back(std::move(read));
  }
  return entries;
}

}  // namespace berth::imagegen::testing
