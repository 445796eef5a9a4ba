#include "berth/erofs/image_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>

namespace berth::erofs {
namespace {

// Enough to turn the many small appends of metadata and small files into few writes.
constexpr size_t kBufferBytes = 1 << 20;
// How much of an image is handed to writeback at a time (early_writeback).
constexpr uint64_t kWritebackBytes = uint64_t{32} << 20;
constexpr uint64_t kMaxImageBytes = (uint64_t{1} << 32) * format::kBlockSize;
const std::string kZeros(format::kBlockSize, '\0');

}  // namespace

ImageFile::ImageFile(UniqueFd fd, bool early_writeback)
    : fd_(std::move(fd)), early_writeback_(early_writeback) {
  buffer_.reserve(kBufferBytes);
}

Result<void> ImageFile::Append(std::string_view data) {
  if (size_ + data.size() > kMaxImageBytes) {
    return Fail(ErrorCode::kResourceExhausted,
                "the image would pass 2^32 blocks (16 TiB), which EROFS cannot address");
  }
  size_ += data.size();
  if (buffer_.size() + data.size() <= kBufferBytes) {
    buffer_.append(data);
    return Ok();
  }
  BERTH_RETURN_IF_ERROR(Flush());
  if (data.size() >= kBufferBytes) return WriteOut(data);
  buffer_.append(data);
  return Ok();
}

Result<void> ImageFile::AppendZeros(uint64_t count) {
  return Append(std::string_view(kZeros).substr(0, count));
}

Result<void> ImageFile::PadToBlock() {
  return AppendZeros(format::RoundUp(size_, format::kBlockSize) - size_);
}

Result<void> ImageFile::Flush() {
  if (buffer_.empty()) return Ok();
  BERTH_RETURN_IF_ERROR(WriteOut(buffer_));
  buffer_.clear();
  return Ok();
}

Result<void> ImageFile::WriteOut(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = pwrite(fd_.get(), data.data(), data.size(), static_cast<off_t>(written_));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrnoError(errno, "write erofs image"));
    }
    written_ += static_cast<uint64_t>(n);
    data.remove_prefix(static_cast<size_t>(n));
  }
  if (early_writeback_ && written_ - handed_to_writeback_ >= kWritebackBytes) {
    // Best effort: a filesystem without it only makes the final fsync wait longer.
    (void)sync_file_range(fd_.get(), static_cast<off_t>(handed_to_writeback_),
                          static_cast<off_t>(written_ - handed_to_writeback_),
                          SYNC_FILE_RANGE_WRITE);
    handed_to_writeback_ = written_;
  }
  return Ok();
}

Result<void> ImageFile::WriteAt(uint64_t offset, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = pwrite(fd_.get(), data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrnoError(errno, "write erofs image"));
    }
    offset += static_cast<uint64_t>(n);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

Result<void> ImageFile::ReadAt(uint64_t offset, size_t size, std::string* out) const {
  out->resize(size);
  size_t done = 0;
  while (done < size) {
    ssize_t n =
        pread(fd_.get(), out->data() + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Fail(ErrnoError(errno, "read erofs scratch file"));
    if (n == 0) {
      return Fail(ErrorCode::kDataLoss,
                  fmt::format("erofs scratch file ends before byte {}", offset + size));
    }
    done += static_cast<size_t>(n);
  }
  return Ok();
}

Result<void> ImageFile::Close(Sync sync) {
  BERTH_RETURN_IF_ERROR(Flush());
  if (ftruncate(fd_.get(), static_cast<off_t>(size_)) != 0) {
    return Fail(ErrnoError(errno, "truncate erofs image"));
  }
  if (sync == Sync::kYes && fsync(fd_.get()) != 0) {
    return Fail(ErrnoError(errno, "fsync erofs image"));
  }
  return Ok();
}

}  // namespace berth::erofs
