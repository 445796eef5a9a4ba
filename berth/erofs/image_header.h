// File: berth/erofs/image_header.h
//
// What an EROFS image's superblock says about it, read without mounting it: enough to tell a
// whole image from a truncated or foreign file (the erofs snapshotter's usage figures and
// `berth check`). It does not check the contents: a file changed inside its blocks reads as
// whole here and fails when the kernel reads it.
//
// Thread safety: a free function; blocking (reads the file).
#pragma once

#include <cstdint>
#include <filesystem>

#include "berth/base/result.h"

namespace berth::erofs {

struct ImageHeader {
  uint64_t inodes = 0;  // inodes the image holds
  uint64_t blocks = 0;  // its size in 4096-byte blocks
};

// The superblock of the image at `path`. kDataLoss naming the file when it holds no EROFS
// superblock berth can mount (wrong magic, a block size other than 4096) or is shorter than the
// blocks its superblock counts (truncated); kNotFound when it does not exist; errno errors
// otherwise.
Result<ImageHeader> ReadImageHeader(const std::filesystem::path& path);

}  // namespace berth::erofs
