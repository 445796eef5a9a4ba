// File: berth/erofs/image_file.h
//
// ImageFile is an append-only file written through one fixed-size buffer: the image being
// written (where a few fixed places, the superblock, are written in place at the end), or the
// scratch file that holds files' tails until then (read back with ReadAt). Internal to
// berth/erofs.
//
// Errors: ErrnoError for failed writes (ENOSPC → kResourceExhausted); kResourceExhausted when
// the image would pass 2^32 blocks, which EROFS block addresses cannot reach.
//
// Thread safety: one thread at a time. Blocking: writes to the file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "berth/base/result.h"
#include "berth/base/unique_fd.h"
#include "berth/erofs/format.h"

namespace berth::erofs {

class ImageFile {
 public:
  // With `early_writeback` (an image that will be fsynced at Close), every 32 MiB written is
  // handed to the kernel's writeback at once (sync_file_range, not waiting), so the write-back
  // of a large layer overlaps its download and the final fsync waits only for the tail.
  explicit ImageFile(UniqueFd fd, bool early_writeback = false);

  // Bytes appended so far (buffered ones included): where the next byte goes.
  uint64_t size() const { return size_; }
  // The block the next byte goes into.
  uint64_t block() const { return size_ >> format::kBlockBits; }

  Result<void> Append(std::string_view data);
  // Appends `count` zero bytes. REQUIRES: count <= format::kBlockSize.
  Result<void> AppendZeros(uint64_t count);
  // Appends zeros up to the next block boundary (nothing when aligned).
  Result<void> PadToBlock();
  // Writes the buffer out.
  Result<void> Flush();
  // Writes `data` at `offset`, below size(). REQUIRES: Flush() since the last Append.
  Result<void> WriteAt(uint64_t offset, std::string_view data);
  // Reads `size` bytes at `offset` into *out. REQUIRES: offset + size <= size() and Flush()
  // since the last Append. kDataLoss if the file is shorter.
  Result<void> ReadAt(uint64_t offset, size_t size, std::string* out) const;
  // Flushes, truncates the file to size() and, with `sync`, fsyncs it.
  enum class Sync { kNo, kYes };
  Result<void> Close(Sync sync);

 private:
  Result<void> WriteOut(std::string_view data);

  UniqueFd fd_;
  std::string buffer_;
  uint64_t size_ = 0;
  uint64_t written_ = 0;  // Bytes already in the file (size_ minus the buffered ones).
  const bool early_writeback_;
  uint64_t handed_to_writeback_ = 0;  // [0, this) was given to sync_file_range
};

}  // namespace berth::erofs
