#include "tools/imagegen/file_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "berth/base/c_handle.h"
#include "berth/base/file_util.h"
#include "berth/base/unique_fd.h"

namespace berth::imagegen {

FileTree& FileTree::AddNode(std::string path, EntryType type, uint32_t default_mode,
                            Attributes attributes, std::string content, std::string link) {
  Node node;
  node.entry.path = std::move(path);
  node.entry.type = type;
  node.entry.mode = attributes.mode.value_or(default_mode);
  node.entry.uid = attributes.uid;
  node.entry.gid = attributes.gid;
  node.entry.user_name = std::move(attributes.user_name);
  node.entry.group_name = std::move(attributes.group_name);
  node.entry.mtime_seconds = attributes.mtime_seconds;
  node.entry.mtime_nanoseconds = attributes.mtime_nanoseconds;
  node.entry.xattrs = std::move(attributes.xattrs);
  node.entry.link_target = std::move(link);
  node.entry.size = type == EntryType::kRegular ? content.size() : 0;
  node.content = std::move(content);
  nodes_.push_back(std::move(node));
  return *this;
}

FileTree& FileTree::AddFile(std::string path, std::string content, Attributes attributes) {
  return AddNode(std::move(path), EntryType::kRegular, 0644, std::move(attributes),
                 std::move(content));
}

namespace {

constexpr uint64_t kTarBlock = 512;

// Lays out the segments of a sparse file as GNU tar does, so that GNU tar, which reads the data
// of each segment from whole 512-byte blocks, and the readers that take the data as one packed
// run (Go's archive/tar, libarchive, berth) agree: empty segments are dropped, every segment
// but the last is extended with zeros from the hole after it to whole blocks (merged with the
// next one when they would meet), and a file that ends in a hole gets an empty segment at its
// end (without it GNU tar stops the file at its last data byte). The logical content does not
// change. An invalid map (unsorted, overlapping, outside the file) is returned as given, for
// TarWriter to refuse.
std::vector<SparseData> GnuTarLayout(uint64_t logical_size, std::vector<SparseData> segments) {
  uint64_t end = 0;
  for (const SparseData& segment : segments) {
    if (segment.offset < end || segment.data.size() > logical_size ||
        segment.offset > logical_size - segment.data.size()) {
      return segments;
    }
    end = segment.offset + segment.data.size();
  }
  std::vector<SparseData> laid_out;
  for (SparseData& segment : segments) {
    if (segment.data.empty()) continue;
    if (!laid_out.empty()) {
      SparseData& previous = laid_out.back();
      uint64_t blocks = (previous.data.size() + kTarBlock - 1) / kTarBlock * kTarBlock;
      if (previous.offset + blocks >= segment.offset) {
        previous.data.append(segment.offset - previous.offset - previous.data.size(), '\0');
        previous.data += segment.data;
        continue;
      }
      previous.data.resize(blocks, '\0');
    }
    laid_out.push_back(std::move(segment));
  }
  if (laid_out.empty() || laid_out.back().offset + laid_out.back().data.size() < logical_size) {
    laid_out.push_back({.offset = logical_size, .data = {}});
  }
  return laid_out;
}

}  // namespace

FileTree& FileTree::AddSparseFile(std::string path, uint64_t logical_size,
                                  std::vector<SparseData> segments, Attributes attributes) {
  segments = GnuTarLayout(logical_size, std::move(segments));
  std::vector<SparseSegment> map;
  std::string content;
  map.reserve(segments.size());
  for (const SparseData& segment : segments) {
    map.push_back({.offset = segment.offset, .length = segment.data.size()});
    content += segment.data;
  }
  AddNode(std::move(path), EntryType::kRegular, 0644, std::move(attributes), std::move(content));
  nodes_.back().entry.size = logical_size;
  nodes_.back().entry.sparse_map = std::move(map);
  return *this;
}

FileTree& FileTree::AddDirectory(std::string path, Attributes attributes) {
  return AddNode(std::move(path), EntryType::kDirectory, 0755, std::move(attributes));
}

FileTree& FileTree::AddSymlink(std::string path, std::string target, Attributes attributes) {
  return AddNode(std::move(path), EntryType::kSymlink, 0777, std::move(attributes), {},
                 std::move(target));
}

FileTree& FileTree::AddHardlink(std::string path, std::string target, Attributes attributes) {
  return AddNode(std::move(path), EntryType::kHardlink, 0644, std::move(attributes), {},
                 std::move(target));
}

FileTree& FileTree::AddCharDevice(std::string path, uint32_t major, uint32_t minor,
                                  Attributes attributes) {
  AddNode(std::move(path), EntryType::kCharDevice, 0644, std::move(attributes));
  nodes_.back().entry.device_major = major;
  nodes_.back().entry.device_minor = minor;
  return *this;
}

FileTree& FileTree::AddBlockDevice(std::string path, uint32_t major, uint32_t minor,
                                   Attributes attributes) {
  AddNode(std::move(path), EntryType::kBlockDevice, 0644, std::move(attributes));
  nodes_.back().entry.device_major = major;
  nodes_.back().entry.device_minor = minor;
  return *this;
}

FileTree& FileTree::AddFifo(std::string path, Attributes attributes) {
  return AddNode(std::move(path), EntryType::kFifo, 0644, std::move(attributes));
}

FileTree& FileTree::AddWhiteout(std::string_view path, Attributes attributes) {
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  std::string whiteout;
  if (slash == std::string_view::npos) {
    whiteout = fmt::format("{}{}", kWhiteoutPrefix, path);
  } else {
    whiteout =
        fmt::format("{}{}{}", path.substr(0, slash + 1), kWhiteoutPrefix, path.substr(slash + 1));
  }
  return AddNode(std::move(whiteout), EntryType::kRegular, 0644, std::move(attributes));
}

FileTree& FileTree::AddOpaqueWhiteout(std::string_view directory, Attributes attributes) {
  while (!directory.empty() && directory.back() == '/') directory.remove_suffix(1);
  std::string marker = directory.empty() ? std::string(kOpaqueWhiteout)
                                         : fmt::format("{}/{}", directory, kOpaqueWhiteout);
  return AddNode(std::move(marker), EntryType::kRegular, 0644, std::move(attributes));
}

FileTree& FileTree::Add(Entry entry, std::string content) {
  if (entry.type == EntryType::kRegular && !entry.sparse_map) entry.size = content.size();
  nodes_.push_back(Node{std::move(entry), std::move(content)});
  return *this;
}

Result<void> FileTree::WriteTo(TarWriter& tar) const {
  for (const Node& node : nodes_) {
    BERTH_RETURN_IF_ERROR(tar.WriteEntry(node.entry, node.content));
  }
  return Ok();
}

namespace {

using UniqueDir = UniqueHandle<DIR, closedir>;

// State of one DirectoryTree::WriteTo() walk.
class Walker {
 public:
  Walker(const DirectoryTreeOptions& options, TarWriter& tar)
      : options_(options),
        tar_(tar),
        buffer_(std::max<size_t>(options.read_chunk_bytes, 4096), '\0') {}

  // Writes the children of `directory` (a host path), named `archive_dir` + name in the tar.
  Result<void> WalkChildren(const std::string& directory, const std::string& archive_dir) {
    UniqueDir dir(::opendir(directory.c_str()));
    if (dir == nullptr) {
      int error = errno;
      if (options_.unreadable == UnreadablePolicy::kSkip && (error == EACCES || error == EPERM)) {
        return Ok();
      }
      return Fail(ErrnoError(error, "open directory " + directory));
    }
    std::vector<std::string> names;
    errno = 0;
    while (dirent* item = ::readdir(dir.get())) {
      std::string_view name = item->d_name;
      if (name == "." || name == "..") continue;
      names.emplace_back(name);
    }
    if (errno != 0) return Fail(ErrnoError(errno, "read directory " + directory));
    // Close before recursing, so deep trees do not hold one descriptor per level.
    dir.reset();
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      BERTH_RETURN_IF_ERROR(Visit(directory + "/" + name, archive_dir + name));
    }
    return Ok();
  }

 private:
  Result<void> Visit(const std::string& host_path, const std::string& archive_path) {
    struct stat info;
    if (::lstat(host_path.c_str(), &info) != 0) {
      return Fail(ErrnoError(errno, "lstat " + host_path));
    }
    Entry entry;
    entry.path = archive_path;
    entry.mode = info.st_mode & 07777;
    entry.uid = options_.uid.value_or(info.st_uid);
    entry.gid = options_.gid.value_or(info.st_gid);
    if (options_.mtime_seconds) {
      entry.mtime_seconds = *options_.mtime_seconds;
    } else {
      entry.mtime_seconds = info.st_mtim.tv_sec;
      entry.mtime_nanoseconds = static_cast<uint32_t>(info.st_mtim.tv_nsec);
    }

    switch (info.st_mode & S_IFMT) {
      case S_IFDIR:
        entry.type = EntryType::kDirectory;
        break;
      case S_IFREG:
        entry.type = EntryType::kRegular;
        break;
      case S_IFLNK: {
        entry.type = EntryType::kSymlink;
        BERTH_ASSIGN_OR_RETURN(entry.link_target, ReadLink(host_path, info.st_size));
        break;
      }
      case S_IFCHR:
      case S_IFBLK:
        entry.type = S_ISCHR(info.st_mode) ? EntryType::kCharDevice : EntryType::kBlockDevice;
        entry.device_major = major(info.st_rdev);
        entry.device_minor = minor(info.st_rdev);
        break;
      case S_IFIFO:
        entry.type = EntryType::kFifo;
        break;
      default:
        return Ok();  // Sockets have no tar form; they are recreated by whoever listens.
    }

    if (entry.type == EntryType::kRegular && info.st_nlink > 1) {
      auto [it, inserted] = links_.try_emplace({info.st_dev, info.st_ino}, archive_path);
      if (!inserted) {
        entry.type = EntryType::kHardlink;
        entry.link_target = it->second;
      }
    }
    if (options_.include_xattrs) {
      BERTH_ASSIGN_OR_RETURN(entry.xattrs, ReadXattrs(host_path, /*follow_symlinks=*/false));
    }

    if (entry.type == EntryType::kRegular) return StreamFile(host_path, std::move(entry), info);
    BERTH_RETURN_IF_ERROR(tar_.WriteHeader(entry));
    if (entry.type == EntryType::kDirectory) {
      return WalkChildren(host_path, archive_path + "/");
    }
    return Ok();
  }

  Result<void> StreamFile(const std::string& host_path, Entry entry, const struct stat& info) {
    UniqueFd fd(::open(host_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
      int error = errno;
      if (options_.unreadable == UnreadablePolicy::kSkip && (error == EACCES || error == EPERM)) {
        // A skipped file must not become the target of later hardlinks.
        links_.erase({info.st_dev, info.st_ino});
        return Ok();
      }
      return Fail(ErrnoError(error, "open " + host_path));
    }
    entry.size = static_cast<uint64_t>(info.st_size);
    BERTH_RETURN_IF_ERROR(tar_.WriteHeader(entry));
    uint64_t remaining = entry.size;
    while (remaining > 0) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(remaining, buffer_.size()));
      ssize_t got = ::read(fd.get(), buffer_.data(), want);
      if (got < 0) {
        if (errno == EINTR) continue;
        return Fail(ErrnoError(errno, "read " + host_path));
      }
      if (got == 0) {
        return Fail(ErrorCode::kAborted,
                    fmt::format("{} shrank while it was archived ({} bytes missing)", host_path,
                                remaining));
      }
      BERTH_RETURN_IF_ERROR(tar_.WriteData(std::string_view(buffer_.data(), got)));
      remaining -= static_cast<uint64_t>(got);
    }
    char extra;
    ssize_t more = ::read(fd.get(), &extra, 1);
    if (more > 0) {
      return Fail(ErrorCode::kAborted, fmt::format("{} grew while it was archived", host_path));
    }
    return Ok();
  }

  static Result<std::string> ReadLink(const std::string& host_path, off_t size_hint) {
    std::string target(std::max<off_t>(size_hint, 64) + 1, '\0');
    while (true) {
      ssize_t length = ::readlink(host_path.c_str(), target.data(), target.size());
      if (length < 0) return Fail(ErrnoError(errno, "readlink " + host_path));
      if (static_cast<size_t>(length) < target.size()) {
        target.resize(length);
        return target;
      }
      target.resize(target.size() * 2);
    }
  }

  const DirectoryTreeOptions& options_;
  TarWriter& tar_;
  std::string buffer_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
};

}  // namespace

Result<void> DirectoryTree::WriteTo(TarWriter& tar) const {
  struct stat info;
  if (::stat(root_.c_str(), &info) != 0) {
    return Fail(ErrnoError(errno, "stat layer source directory " + root_.string()));
  }
  if (!S_ISDIR(info.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("layer source {} is not a directory", root_.string()));
  }
  Walker walker(options_, tar);
  std::string root = root_.string();
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  std::string prefix = options_.path_prefix;
  if (!prefix.empty() && prefix.back() != '/') prefix.push_back('/');
  return walker.WalkChildren(root, prefix);
}

}  // namespace berth::imagegen
