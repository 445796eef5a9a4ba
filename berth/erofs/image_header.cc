#include "berth/erofs/image_header.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "berth/base/unique_fd.h"
#include "berth/erofs/format.h"

namespace berth::erofs {

Result<ImageHeader> ReadImageHeader(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Fail(ErrnoError(errno, fmt::format("open erofs image {}", path.string())));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return Fail(ErrnoError(errno, fmt::format("stat erofs image {}", path.string())));
  }
  auto damaged = [&](std::string_view what) {
    return Fail(ErrorCode::kDataLoss,
                fmt::format("erofs image {} is damaged: {}", path.string(), what));
  };
  std::array<char, format::kSuperBlockSize> block{};
  const ssize_t got = ::pread(fd.get(), block.data(), block.size(), format::kSuperBlockOffset);
  if (got < 0) return Fail(ErrnoError(errno, fmt::format("read erofs image {}", path.string())));
  if (got != static_cast<ssize_t>(block.size())) return damaged("no superblock (truncated)");
  if (format::GetLe(block.data() + format::kSbMagic, 4) != format::kMagic) {
    return damaged("no EROFS superblock (wrong magic)");
  }
  if (static_cast<uint8_t>(block[format::kSbBlockBits]) != format::kBlockBits) {
    return damaged("a block size other than 4096");
  }
  const ImageHeader header{.inodes = format::GetLe(block.data() + format::kSbInodes, 8),
                           .blocks = format::GetLe(block.data() + format::kSbBlocks, 4)};
  const uint64_t expected = header.blocks * format::kBlockSize;
  if (static_cast<uint64_t>(st.st_size) < expected) {
    return damaged(
        fmt::format("{} bytes where its superblock counts {} (truncated)", st.st_size, expected));
  }
  return header;
}

}  // namespace berth::erofs
