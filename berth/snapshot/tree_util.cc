#include "berth/snapshot/tree_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "berth/base/c_handle.h"
#include "berth/base/unique_fd.h"

namespace berth::snapshot {
namespace {

namespace fs = std::filesystem;
using UniqueDir = UniqueHandle<DIR, closedir>;

Error PathError(int errnum, std::string_view what, const fs::path& path) {
  return ErrnoError(errnum, fmt::format("{} {}", what, path.string()));
}

// Names in `directory`, without "." and "..".
Result<std::vector<std::string>> ListDirectory(const fs::path& directory) {
  UniqueDir dir(::opendir(directory.c_str()));
  if (dir == nullptr) return Fail(PathError(errno, "open directory", directory));
  std::vector<std::string> names;
  while (true) {
    errno = 0;
    dirent* entry = ::readdir(dir.get());
    if (entry == nullptr) {
      if (errno != 0) return Fail(PathError(errno, "read directory", directory));
      break;
    }
    std::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  return names;
}

Result<void> CopyXattrs(const fs::path& source, const fs::path& destination) {
  ssize_t size = ::llistxattr(source.c_str(), nullptr, 0);
  if (size < 0) {
    if (errno == ENOTSUP) return Ok();
    return Fail(PathError(errno, "list xattrs of", source));
  }
  if (size == 0) return Ok();
  std::string names(static_cast<size_t>(size), '\0');
  size = ::llistxattr(source.c_str(), names.data(), names.size());
  if (size < 0) return Fail(PathError(errno, "list xattrs of", source));
  names.resize(static_cast<size_t>(size));
  for (size_t start = 0; start < names.size();) {
    size_t end = names.find('\0', start);
    if (end == std::string::npos) end = names.size();
    std::string name = names.substr(start, end - start);
    start = end + 1;
    if (name.empty()) continue;
    ssize_t value_size = ::lgetxattr(source.c_str(), name.c_str(), nullptr, 0);
    if (value_size < 0) {
      return Fail(PathError(errno, fmt::format("read xattr {} of", name), source));
    }
    std::string value(static_cast<size_t>(value_size), '\0');
    value_size = ::lgetxattr(source.c_str(), name.c_str(), value.data(), value.size());
    if (value_size < 0) {
      return Fail(PathError(errno, fmt::format("read xattr {} of", name), source));
    }
    value.resize(static_cast<size_t>(value_size));
    if (::lsetxattr(destination.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
      return Fail(PathError(errno, fmt::format("set xattr {} on", name), destination));
    }
  }
  return Ok();
}

// Owner first (chown clears setuid/setgid and file capabilities), then mode, xattrs, times.
Result<void> CopyMetadata(const fs::path& destination, const fs::path& source,
                          const struct stat& st) {
  if (::lchown(destination.c_str(), st.st_uid, st.st_gid) != 0) {
    return Fail(PathError(errno, "chown", destination));
  }
  if (!S_ISLNK(st.st_mode) && ::chmod(destination.c_str(), st.st_mode & 07777) != 0) {
    return Fail(PathError(errno, "chmod", destination));
  }
  BERTH_RETURN_IF_ERROR(CopyXattrs(source, destination));
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  if (::utimensat(AT_FDCWD, destination.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return Fail(PathError(errno, "set times of", destination));
  }
  return Ok();
}

// Copies bytes [offset, end) of `in` to the same offsets of `out`: in the kernel with
// copy_file_range while `in_kernel` holds (cleared once the kernel refuses), else with
// pread/pwrite. Stops early if `in` ends first.
Result<void> CopyRange(int in, int out, off_t offset, off_t end, bool& in_kernel,
                       const fs::path& source, const fs::path& destination) {
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
    return Fail(PathError(errno, "copy data to", destination));
  }
  char buffer[128 * 1024];
  while (offset < end) {
    size_t want = static_cast<size_t>(std::min<off_t>(end - offset, sizeof buffer));
    ssize_t n = ::pread(in, buffer, want, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(PathError(errno, "read", source));
    }
    if (n == 0) return Ok();
    for (ssize_t done = 0; done < n;) {
      ssize_t written = ::pwrite(out, buffer + done, static_cast<size_t>(n - done), offset + done);
      if (written < 0) {
        if (errno == EINTR) continue;
        return Fail(PathError(errno, "write", destination));
      }
      done += written;
    }
    offset += n;
  }
  return Ok();
}

// Copies a regular file's data. Holes stay holes: only the data regions that SEEK_DATA and
// SEEK_HOLE report are copied (copy_file_range and read/write would fill them with zeros), and
// the size is set at the end, so a trailing hole is kept too.
Result<void> CopyFileData(const fs::path& source, const fs::path& destination) {
  UniqueFd in(::open(source.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in) return Fail(PathError(errno, "open", source));
  UniqueFd out(
      ::open(destination.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out) return Fail(PathError(errno, "create", destination));
  // Sharing extents is instant and costs no space where the filesystem allows it.
  if (::ioctl(out.get(), FICLONE, in.get()) == 0) return Ok();
  struct stat st;
  if (::fstat(in.get(), &st) != 0) return Fail(PathError(errno, "stat", source));
  const off_t size = st.st_size;
  bool in_kernel = true;
  for (off_t offset = 0; offset < size;) {
    off_t data = ::lseek(in.get(), offset, SEEK_DATA);
    off_t hole = size;
    if (data < 0) {
      if (errno == ENXIO) break;  // Only a hole is left.
      if (errno != EINVAL) return Fail(PathError(errno, "find data in", source));
      data = offset;  // The filesystem cannot tell: the rest is copied as data.
    } else {
      hole = ::lseek(in.get(), data, SEEK_HOLE);
      if (hole < 0) return Fail(PathError(errno, "find a hole in", source));
      hole = std::min(hole, size);
    }
    BERTH_RETURN_IF_ERROR(
        CopyRange(in.get(), out.get(), data, hole, in_kernel, source, destination));
    offset = hole;
  }
  if (::ftruncate(out.get(), size) != 0) {
    return Fail(PathError(errno, "set the size of", destination));
  }
  return Ok();
}

class TreeCopier {
 public:
  Result<void> CopyContents(const fs::path& source, const fs::path& destination) {
    BERTH_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDirectory(source));
    for (const std::string& name : names) {
      BERTH_RETURN_IF_ERROR(CopyEntry(source / name, destination / name));
    }
    return Ok();
  }

 private:
  Result<void> CopyEntry(const fs::path& source, const fs::path& destination) {
    struct stat st;
    if (::lstat(source.c_str(), &st) != 0) return Fail(PathError(errno, "stat", source));
    if (S_ISDIR(st.st_mode)) {
      // Writable while we fill it; the real mode and times are set once its contents exist.
      if (::mkdir(destination.c_str(), 0700) != 0) {
        return Fail(PathError(errno, "create directory", destination));
      }
      BERTH_RETURN_IF_ERROR(CopyContents(source, destination));
      return CopyMetadata(destination, source, st);
    }
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      auto [it, inserted] = links_.try_emplace({st.st_dev, st.st_ino}, destination);
      if (!inserted) {
        if (::link(it->second.c_str(), destination.c_str()) != 0) {
          return Fail(PathError(errno, "link", destination));
        }
        return Ok();
      }
    }
    if (S_ISREG(st.st_mode)) {
      BERTH_RETURN_IF_ERROR(CopyFileData(source, destination));
    } else if (S_ISLNK(st.st_mode)) {
      std::string target(static_cast<size_t>(st.st_size > 0 ? st.st_size : PATH_MAX) + 1, '\0');
      ssize_t length = ::readlink(source.c_str(), target.data(), target.size());
      if (length < 0) return Fail(PathError(errno, "read link", source));
      target.resize(static_cast<size_t>(length));
      if (::symlink(target.c_str(), destination.c_str()) != 0) {
        return Fail(PathError(errno, "create symlink", destination));
      }
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode) ||
               S_ISSOCK(st.st_mode)) {
      if (::mknod(destination.c_str(), st.st_mode, st.st_rdev) != 0) {
        return Fail(PathError(errno, "create node", destination));
      }
    } else {
      return Fail(ErrorCode::kUnimplemented, fmt::format("copy {}: unsupported file type {:o}",
                                                         source.string(), st.st_mode & S_IFMT));
    }
    return CopyMetadata(destination, source, st);
  }

  std::map<std::pair<dev_t, ino_t>, fs::path> links_;
};

Result<void> AddUsage(const fs::path& path, Usage& usage, std::set<std::pair<dev_t, ino_t>>& seen) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return Fail(PathError(errno, "stat", path));
  if (seen.insert({st.st_dev, st.st_ino}).second) {
    usage.size += static_cast<int64_t>(st.st_blocks) * 512;
    usage.inodes += 1;
  }
  if (S_ISDIR(st.st_mode)) {
    BERTH_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDirectory(path));
    for (const std::string& name : names) {
      BERTH_RETURN_IF_ERROR(AddUsage(path / name, usage, seen));
    }
  }
  return Ok();
}

// Gives every directory under `path` owner write and search permission, so a tree whose
// directories are read-only can be removed.
void MakeWritable(const fs::path& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return;
  ::chmod(path.c_str(), (st.st_mode & 07777) | S_IRWXU);
  auto names = ListDirectory(path);
  if (!names) return;
  for (const std::string& name : *names) MakeWritable(path / name);
}

}  // namespace

Result<void> CopyTree(const fs::path& source, const fs::path& destination) {
  struct stat st;
  if (::lstat(source.c_str(), &st) != 0) return Fail(PathError(errno, "stat", source));
  if (!S_ISDIR(st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("copy tree: {} is not a directory", source.string()));
  }
  TreeCopier copier;
  BERTH_RETURN_IF_ERROR(copier.CopyContents(source, destination));
  return CopyMetadata(destination, source, st);
}

Result<Usage> DiskUsage(const fs::path& directory) {
  Usage usage;
  std::set<std::pair<dev_t, ino_t>> seen;
  BERTH_RETURN_IF_ERROR(AddUsage(directory, usage, seen));
  return usage;
}

Result<void> RemoveTree(const fs::path& path) {
  std::error_code error;
  fs::remove_all(path, error);
  if (!error) return Ok();
  if (error.value() == EACCES || error.value() == EPERM) {
    MakeWritable(path);
    error.clear();
    fs::remove_all(path, error);
    if (!error) return Ok();
  }
  return Fail(PathError(error.value(), "remove", path));
}

Result<void> SyncDirectory(const fs::path& directory) {
  UniqueFd fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Fail(PathError(errno, "open", directory));
  if (::fsync(fd.get()) != 0) return Fail(PathError(errno, "fsync", directory));
  return Ok();
}

Result<void> SyncFilesystem(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Fail(PathError(errno, "open", path));
  if (::syncfs(fd.get()) != 0) return Fail(PathError(errno, "syncfs", path));
  return Ok();
}

}  // namespace berth::snapshot
