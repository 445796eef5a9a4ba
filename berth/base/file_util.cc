#include "berth/base/file_util.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>

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
  return SyncDirectory(dir);
}

Result<void> SyncDirectory(const std::filesystem::path& directory) {
  UniqueFd fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd || ::fsync(fd.get()) != 0) {
    return Fail(ErrnoError(errno, fmt::format("fsync directory {}", directory.string())));
  }
  return Ok();
}

Result<void> MakeDirectories(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return Fail(ErrnoError(ec.value(), fmt::format("create directory {}", path.string())));
  return Ok();
}

namespace {

Error PathError(int errnum, std::string_view what, const std::filesystem::path& path) {
  return ErrnoError(errnum, fmt::format("{} {}", what, path.string()));
}

// Copies bytes [offset, end) of `in` to the same offsets of `out`: in the kernel with
// copy_file_range while `in_kernel` holds (cleared once the kernel refuses), else with
// pread/pwrite. Stops early if `in` ends first.
Result<void> CopyRange(int in, int out, off_t offset, off_t end, bool& in_kernel,
                       const std::filesystem::path& in_name,
                       const std::filesystem::path& out_name) {
  while (in_kernel && offset < end) {
    loff_t in_offset = offset;
    loff_t out_offset = offset;
    size_t want = static_cast<size_t>(std::min<off_t>(end - offset, off_t{1} << 30));
    ssize_t copied = ::copy_file_range(in, &in_offset, out, &out_offset, want, 0);
    if (copied > 0) {
      offset += copied;
      continue;
    }
    if (copied == 0) return Ok();
    if (errno == EINTR) continue;
    if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
      in_kernel = false;
      break;
    }
    return Fail(PathError(errno, "copy data to", out_name));
  }
  char buffer[128 * 1024];
  while (offset < end) {
    size_t want = static_cast<size_t>(std::min<off_t>(end - offset, sizeof buffer));
    ssize_t n = ::pread(in, buffer, want, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(PathError(errno, "read", in_name));
    }
    if (n == 0) return Ok();
    for (ssize_t done = 0; done < n;) {
      ssize_t written = ::pwrite(out, buffer + done, static_cast<size_t>(n - done), offset + done);
      if (written < 0) {
        if (errno == EINTR) continue;
        return Fail(PathError(errno, "write", out_name));
      }
      done += written;
    }
    offset += n;
  }
  return Ok();
}

}  // namespace

Result<void> CopyFileData(int in, int out, const std::filesystem::path& in_name,
                          const std::filesystem::path& out_name) {
  // Sharing extents is instant and costs no space where the filesystem allows it.
  if (::ioctl(out, FICLONE, in) == 0) return Ok();
  struct stat st;
  if (::fstat(in, &st) != 0) return Fail(PathError(errno, "stat", in_name));
  const off_t size = st.st_size;
  bool in_kernel = true;
  for (off_t offset = 0; offset < size;) {
    off_t data = ::lseek(in, offset, SEEK_DATA);
    off_t hole = size;
    if (data < 0) {
      if (errno == ENXIO) break;  // Only a hole is left.
      if (errno != EINVAL) return Fail(PathError(errno, "find data in", in_name));
      data = offset;  // The filesystem cannot tell: the rest is copied as data.
    } else {
      hole = ::lseek(in, data, SEEK_HOLE);
      if (hole < 0) return Fail(PathError(errno, "find a hole in", in_name));
      hole = std::min(hole, size);
    }
    BERTH_RETURN_IF_ERROR(CopyRange(in, out, data, hole, in_kernel, in_name, out_name));
    offset = hole;
  }
  if (::ftruncate(out, size) != 0) return Fail(PathError(errno, "set the size of", out_name));
  return Ok();
}

Result<std::map<std::string, std::string>> ReadXattrs(const std::filesystem::path& path,
                                                      bool follow_symlinks) {
  auto list = follow_symlinks ? ::listxattr : ::llistxattr;
  auto get = follow_symlinks ? ::getxattr : ::lgetxattr;
  std::map<std::string, std::string> xattrs;
  ssize_t size = list(path.c_str(), nullptr, 0);
  if (size < 0) {
    if (errno == ENOTSUP) return xattrs;
    return Fail(PathError(errno, "list xattrs of", path));
  }
  if (size == 0) return xattrs;
  std::string names(static_cast<size_t>(size), '\0');
  size = list(path.c_str(), names.data(), names.size());
  if (size < 0) return Fail(PathError(errno, "list xattrs of", path));
  names.resize(static_cast<size_t>(size));
  for (size_t start = 0; start < names.size();) {
    size_t end = names.find('\0', start);
    if (end == std::string::npos) end = names.size();
    std::string name = names.substr(start, end - start);
    start = end + 1;
    if (name.empty()) continue;
    std::string value;
    bool removed = false;
    while (true) {
      ssize_t value_size = get(path.c_str(), name.c_str(), nullptr, 0);
      if (value_size >= 0) {
        value.resize(static_cast<size_t>(value_size));
        value_size = get(path.c_str(), name.c_str(), value.data(), value.size());
      }
      if (value_size >= 0) {
        value.resize(static_cast<size_t>(value_size));
        break;
      }
      if (errno == ERANGE) continue;  // It grew between the two calls.
      if (errno == ENODATA) {         // Removed since the list.
        removed = true;
        break;
      }
      return Fail(PathError(errno, fmt::format("read xattr {} of", name), path));
    }
    if (!removed) xattrs.emplace(std::move(name), std::move(value));
  }
  return xattrs;
}

Result<void> CopyXattrs(const std::filesystem::path& source,
                        const std::filesystem::path& destination, bool follow_symlinks) {
  BERTH_ASSIGN_OR_RETURN(auto xattrs, ReadXattrs(source, follow_symlinks));
  auto set = follow_symlinks ? ::setxattr : ::lsetxattr;
  for (const auto& [name, value] : xattrs) {
    if (set(destination.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
      return Fail(PathError(errno, fmt::format("set xattr {} on", name), destination));
    }
  }
  return Ok();
}

}  // namespace berth
