#include "berth/erofs/directory_walker.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "berth/archive/whiteouts.h"
#include "berth/base/unique_fd.h"

namespace berth::erofs {
namespace {

using archive::kOpaqueMarker;
using archive::kWhiteoutPrefix;

namespace fs = std::filesystem;

constexpr size_t kReadChunkBytes = 1 << 20;

bool IsOverlayXattr(std::string_view name) {
  return name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.");
}

std::string JoinPath(std::string_view parent, std::string_view name) {
  return parent.empty() ? std::string(name) : fmt::format("{}/{}", parent, name);
}

class Walker {
 public:
  Walker(fs::path root, archive::TarVisitor& visitor)
      : root_(std::move(root)), visitor_(visitor), buffer_(kReadChunkBytes) {}

  Result<void> Run() {
    UniqueFd fd(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return Fail(ErrnoError(errno, fmt::format("open {}", root_.string())));
    return WalkChildren(fd.get(), "");
  }

 private:
  // The names in the directory `fd`, sorted.
  Result<std::vector<std::string>> ListNames(int fd, std::string_view path) {
    int copy = ::dup(fd);
    if (copy < 0) return Fail(ErrnoError(errno, fmt::format("list {}", Describe(path))));
    DIR* dir = ::fdopendir(copy);
    if (dir == nullptr) {
      ::close(copy);
      return Fail(ErrnoError(errno, fmt::format("list {}", Describe(path))));
    }
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* entry = ::readdir(dir)) {
      std::string_view name = entry->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
    const int read_errno = errno;
    ::closedir(dir);
    if (read_errno != 0) {
      return Fail(ErrnoError(read_errno, fmt::format("list {}", Describe(path))));
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  Result<void> WalkChildren(int dir_fd, const std::string& path) {
    BERTH_ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(dir_fd, path));
    for (const std::string& name : names) {
      BERTH_RETURN_IF_ERROR(VisitNode(dir_fd, name, JoinPath(path, name)));
    }
    return Ok();
  }

  Result<void> VisitNode(int dir_fd, const std::string& name, const std::string& path) {
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return Fail(ErrnoError(errno, fmt::format("stat {}", Describe(path))));
    }
    archive::TarEntry entry = EntryFor(st, path);
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
      return EmitWhiteout(st, JoinPath(ParentOf(path), std::string(kWhiteoutPrefix) + name));
    }
    if (S_ISSOCK(st.st_mode)) return Ok();
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      auto [it, first] = first_names_.try_emplace({st.st_dev, st.st_ino}, path);
      if (!first) {
        entry.type = archive::TarEntryType::kHardlink;
        entry.link_target = it->second;
        entry.size = 0;
        return Emit(entry);
      }
    }
    if (S_ISDIR(st.st_mode)) return VisitDirectory(dir_fd, name, path, std::move(entry));
    if (S_ISLNK(st.st_mode)) {
      BERTH_ASSIGN_OR_RETURN(entry.link_target, ReadLink(dir_fd, name, path, st));
    }
    // Regular files need an fd for their contents; the others are described by fstatat alone.
    UniqueFd fd;
    if (S_ISREG(st.st_mode)) {
      fd.reset(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (!fd) return Fail(ErrnoError(errno, fmt::format("open {}", Describe(path))));
    }
    BERTH_ASSIGN_OR_RETURN(entry.xattrs, ReadXattrs(dir_fd, name, path));
    BERTH_RETURN_IF_ERROR(visitor_.OnEntry(entry));
    if (fd) BERTH_RETURN_IF_ERROR(StreamContents(fd.get(), path, st.st_size));
    return visitor_.OnEntryEnd();
  }

  Result<void> VisitDirectory(int dir_fd, const std::string& name, const std::string& path,
                              archive::TarEntry entry) {
    UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return Fail(ErrnoError(errno, fmt::format("open {}", Describe(path))));
    BERTH_ASSIGN_OR_RETURN(auto xattrs, ReadXattrs(dir_fd, name, path));
    bool opaque = false;
    for (auto& [key, value] : xattrs) {
      if (key == "trusted.overlay.opaque" || key == "user.overlay.opaque") opaque = value == "y";
      if (!IsOverlayXattr(key)) entry.xattrs.emplace_back(std::move(key), std::move(value));
    }
    BERTH_RETURN_IF_ERROR(Emit(entry));
    if (opaque) {
      archive::TarEntry marker = entry;
      marker.path = JoinPath(path, kOpaqueMarker);
      marker.type = archive::TarEntryType::kRegular;
      marker.mode = 0;
      marker.xattrs.clear();
      BERTH_RETURN_IF_ERROR(Emit(marker));
    }
    return WalkChildren(fd.get(), path);
  }

  Result<void> EmitWhiteout(const struct stat& st, const std::string& path) {
    archive::TarEntry entry = EntryFor(st, path);
    entry.type = archive::TarEntryType::kRegular;
    entry.mode = 0;
    entry.device_major = 0;
    entry.device_minor = 0;
    return Emit(entry);
  }

  Result<void> Emit(const archive::TarEntry& entry) {
    BERTH_RETURN_IF_ERROR(visitor_.OnEntry(entry));
    return visitor_.OnEntryEnd();
  }

  archive::TarEntry EntryFor(const struct stat& st, const std::string& path) const {
    archive::TarEntry entry;
    entry.path = path;
    entry.mode = st.st_mode & 07777;
    entry.uid = st.st_uid;
    entry.gid = st.st_gid;
    entry.mtime = {.seconds = st.st_mtim.tv_sec,
                   .nanoseconds = static_cast<uint32_t>(st.st_mtim.tv_nsec)};
    if (S_ISREG(st.st_mode)) {
      entry.type = archive::TarEntryType::kRegular;
      entry.size = static_cast<uint64_t>(st.st_size);
    } else if (S_ISDIR(st.st_mode)) {
      entry.type = archive::TarEntryType::kDirectory;
    } else if (S_ISLNK(st.st_mode)) {
      entry.type = archive::TarEntryType::kSymlink;
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      entry.type = S_ISCHR(st.st_mode) ? archive::TarEntryType::kCharDevice
                                       : archive::TarEntryType::kBlockDevice;
      entry.device_major = major(st.st_rdev);
      entry.device_minor = minor(st.st_rdev);
    } else {
      entry.type = archive::TarEntryType::kFifo;
    }
    return entry;
  }

  Result<std::string> ReadLink(int dir_fd, const std::string& name, const std::string& path,
                               const struct stat& st) {
    std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
    ssize_t length = ::readlinkat(dir_fd, name.c_str(), target.data(), target.size());
    if (length < 0) return Fail(ErrnoError(errno, fmt::format("read link {}", Describe(path))));
    target.resize(static_cast<size_t>(length));
    return target;
  }

  // Every xattr of `name` but overlayfs's own, in listing order.
  Result<std::vector<std::pair<std::string, std::string>>> ReadXattrs(int dir_fd,
                                                                      const std::string& name,
                                                                      const std::string& path) {
    // The l*xattr calls take paths; /proc/self/fd keeps the lookup relative to `dir_fd`.
    const std::string node = fmt::format("/proc/self/fd/{}/{}", dir_fd, name);
    std::vector<std::pair<std::string, std::string>> xattrs;
    ssize_t size = ::llistxattr(node.c_str(), nullptr, 0);
    if (size < 0) {
      if (errno == ENOTSUP) return xattrs;
      return Fail(ErrnoError(errno, fmt::format("list xattrs of {}", Describe(path))));
    }
    std::string names(static_cast<size_t>(size), '\0');
    size = ::llistxattr(node.c_str(), names.data(), names.size());
    if (size < 0) return Fail(ErrnoError(errno, fmt::format("list xattrs of {}", Describe(path))));
    names.resize(static_cast<size_t>(size));
    for (size_t start = 0; start < names.size();) {
      size_t end = names.find('\0', start);
      if (end == std::string::npos) end = names.size();
      std::string key = names.substr(start, end - start);
      start = end + 1;
      if (key.empty()) continue;
      BERTH_ASSIGN_OR_RETURN(std::string value, ReadXattr(node, key, path));
      if (key == "trusted.overlay.opaque" || key == "user.overlay.opaque" || !IsOverlayXattr(key)) {
        xattrs.emplace_back(std::move(key), std::move(value));
      }
    }
    return xattrs;
  }

  Result<std::string> ReadXattr(const std::string& node, const std::string& key,
                                const std::string& path) {
    for (int attempt = 0; attempt < 3; ++attempt) {
      ssize_t size = ::lgetxattr(node.c_str(), key.c_str(), nullptr, 0);
      if (size < 0) break;
      std::string value(static_cast<size_t>(size), '\0');
      size = ::lgetxattr(node.c_str(), key.c_str(), value.data(), value.size());
      if (size >= 0) {
        value.resize(static_cast<size_t>(size));
        return value;
      }
      if (errno != ERANGE) break;  // ERANGE: the value grew between the two calls
    }
    return Fail(ErrnoError(errno, fmt::format("read xattr {} of {}", key, Describe(path))));
  }

  Result<void> StreamContents(int fd, const std::string& path, off_t size) {
    uint64_t offset = 0;
    while (offset < static_cast<uint64_t>(size)) {
      ssize_t got = ::pread(fd, buffer_.data(), buffer_.size(), static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return Fail(ErrnoError(errno, fmt::format("read {}", Describe(path))));
      if (got == 0) {
        return Fail(ErrorCode::kDataLoss,
                    fmt::format("{} shrank to {} bytes while it was read (it was {}); the tree "
                                "must not change during a commit",
                                Describe(path), offset, size));
      }
      BERTH_RETURN_IF_ERROR(
          visitor_.OnData(offset, std::string_view(buffer_.data(), static_cast<size_t>(got))));
      offset += static_cast<uint64_t>(got);
    }
    return Ok();
  }

  static std::string ParentOf(const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? std::string() : path.substr(0, slash);
  }

  std::string Describe(std::string_view path) const {
    return path.empty() ? root_.string() : (root_ / path).string();
  }

  const fs::path root_;
  archive::TarVisitor& visitor_;
  std::vector<char> buffer_;
  std::map<std::pair<dev_t, ino_t>, std::string> first_names_;
};

}  // namespace

Result<void> WalkDirectory(const fs::path& root, archive::TarVisitor& visitor) {
  return Walker(root, visitor).Run();
}

}  // namespace berth::erofs
