#include "berth/base/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <random>

#include <fmt/format.h>

#include "berth/base/unique_fd.h"

namespace berth {

Result<std::string> ReadFile(const std::filesystem::path& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Fail(ErrnoError(errno, fmt::format("open {}", path.string())));
  std::string data;
  char buffer[64 * 1024];
  while (true) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrnoError(errno, fmt::format("read {}", path.string())));
    }
    if (n == 0) break;
    if (data.size() + static_cast<size_t>(n) > max_bytes) {
      return Fail(ErrorCode::kResourceExhausted,
                  fmt::format("{} is larger than {} bytes", path.string(), max_bytes));
    }
    data.append(buffer, static_cast<size_t>(n));
  }
  return data;
}

Result<void> WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrnoError(errno, "write"));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

Result<void> WriteFileAtomically(const std::filesystem::path& path, std::string_view data,
                                 unsigned mode) {
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  std::random_device random;
  std::filesystem::path temp =
      dir / fmt::format(".{}.tmp-{:08x}", path.filename().string(), random());
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd) return Fail(ErrnoError(errno, fmt::format("create {}", temp.string())));
  auto cleanup_on_error = [&](Error error) {
    ::unlink(temp.c_str());
    return Fail(std::move(error).WithContext(fmt::format("write {}", path.string())));
  };
  if (auto written = WriteAll(fd.get(), data); !written) return cleanup_on_error(written.error());
  if (::fsync(fd.get()) != 0) return cleanup_on_error(ErrnoError(errno, "fsync"));
  fd.reset();
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    return cleanup_on_error(ErrnoError(errno, "rename"));
  }
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd || ::fsync(dir_fd.get()) != 0) {
    return Fail(ErrnoError(errno, fmt::format("fsync directory {}", dir.string())));
  }
  return Ok();
}

Result<void> MakeDirectories(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return Fail(ErrnoError(ec.value(), fmt::format("create directory {}", path.string())));
  return Ok();
}

}  // namespace berth
