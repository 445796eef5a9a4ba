#include "berth/snapshot/tree_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "berth/base/c_handle.h"
#include "berth/base/file_util.h"
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

// Owner first (chown clears setuid/setgid and file capabilities), then mode, xattrs, times.
Result<void> CopyMetadata(const fs::path& destination, const fs::path& source,
                          const struct stat& st) {
  if (::lchown(destination.c_str(), st.st_uid, st.st_gid) != 0) {
    return Fail(PathError(errno, "chown", destination));
  }
  if (!S_ISLNK(st.st_mode) && ::chmod(destination.c_str(), st.st_mode & 07777) != 0) {
    return Fail(PathError(errno, "chmod", destination));
  }
  BERTH_RETURN_IF_ERROR(CopyXattrs(source, destination, /*follow_symlinks=*/false));
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  if (::utimensat(AT_FDCWD, destination.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return Fail(PathError(errno, "set times of", destination));
  }
  return Ok();
}

// Copies a regular file's data, holes kept (CopyFileData).
Result<void> CopyRegularFile(const fs::path& source, const fs::path& destination) {
  UniqueFd in(::open(source.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in) return Fail(PathError(errno, "open", source));
  UniqueFd out(
      ::open(destination.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out) return Fail(PathError(errno, "create", destination));
  return CopyFileData(in.get(), out.get(), source, destination);
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
      BERTH_RETURN_IF_ERROR(CopyRegularFile(source, destination));
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

// Adds one inode's allocation; a file with several links counts once (`linked` remembers them).
void Count(const struct stat& st, Usage& usage, std::set<std::pair<dev_t, ino_t>>& linked) {
  if (!S_ISDIR(st.st_mode) && st.st_nlink > 1 && !linked.insert({st.st_dev, st.st_ino}).second) {
    return;
  }
  usage.size += static_cast<int64_t>(st.st_blocks) * 512;
  usage.inodes += 1;
}

// What a usage walk does with an entry it cannot stat or a directory it cannot read.
enum class Unreadable { kFail, kSkip };

// Adds what the directory `path` holds, below it. Entries are stat'ed relative to their
// directory (one path lookup per directory, not per file), and a directory is closed before its
// subdirectories are visited, so any depth needs one descriptor. Entries on another device than
// `device` (mount points, and so what is mounted there) are left out.
Result<void> AddContentsUsage(const fs::path& path, dev_t device, Unreadable unreadable,
                              Usage& usage, std::set<std::pair<dev_t, ino_t>>& linked) {
  std::vector<std::string> subdirectories;
  {
    UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) {
      if (unreadable == Unreadable::kSkip) return Ok();
      return Fail(PathError(errno, "open directory", path));
    }
    Result<std::vector<std::string>> names = ListDirectory(path);
    if (!names) {
      if (unreadable == Unreadable::kSkip) return Ok();
      return Fail(std::move(names).error());
    }
    for (std::string& name : *names) {
      struct stat st;
      if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (unreadable == Unreadable::kSkip) continue;
        return Fail(PathError(errno, "stat", path / name));
      }
      if (st.st_dev != device) continue;
      Count(st, usage, linked);
      if (S_ISDIR(st.st_mode)) subdirectories.push_back(std::move(name));
    }
  }
  for (const std::string& name : subdirectories) {
    BERTH_RETURN_IF_ERROR(AddContentsUsage(path / name, device, unreadable, usage, linked));
  }
  return Ok();
}

// Adds the tree at `directory`, itself included.
Result<void> AddTreeUsage(const fs::path& directory, Unreadable unreadable, Usage& usage,
                          std::set<std::pair<dev_t, ino_t>>& linked) {
  struct stat st;
  if (::lstat(directory.c_str(), &st) != 0) {
    if (unreadable == Unreadable::kSkip) return Ok();
    return Fail(PathError(errno, "stat", directory));
  }
  Count(st, usage, linked);
  if (!S_ISDIR(st.st_mode)) return Ok();
  return AddContentsUsage(directory, st.st_dev, unreadable, usage, linked);
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
  std::set<std::pair<dev_t, ino_t>> linked;
  BERTH_RETURN_IF_ERROR(AddTreeUsage(directory, Unreadable::kFail, usage, linked));
  return usage;
}

Usage DiskUsageBestEffort(const std::vector<fs::path>& directories) {
  Usage usage;
  std::set<std::pair<dev_t, ino_t>> linked;
  // With kSkip nothing fails: what cannot be read is left out.
  for (const fs::path& directory : directories) {
    (void)AddTreeUsage(directory, Unreadable::kSkip, usage, linked);
  }
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

Result<void> SyncFilesystem(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Fail(PathError(errno, "open", path));
  if (::syncfs(fd.get()) != 0) return Fail(PathError(errno, "syncfs", path));
  return Ok();
}

}  // namespace berth::snapshot
