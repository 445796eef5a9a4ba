#include "berth/archive/parent_dir_cache.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cerrno>

namespace berth::archive {

int ParentDirCache::Find(std::string_view path) const {
  return valid_ && path_ == path ? fd_.get() : -1;
}

Result<int> ParentDirCache::Insert(std::string path, UniqueFd fd) {
  fd_ = std::move(fd);
  struct stat st;
  if (fstat(fd_.get(), &st) != 0) {
    return Fail(ErrnoError(errno, fmt::format("stat \"{}\"", path)));
  }
  setgid_ = (st.st_mode & S_ISGID) != 0;
  gid_ = st.st_gid;
  const std::string proc = fmt::format("/proc/self/fd/{}", fd_.get());
  default_acl_ = getxattr(proc.c_str(), "system.posix_acl_default", nullptr, 0) >= 0;
  path_ = std::move(path);
  valid_ = true;
  return fd_.get();
}

void ParentDirCache::Invalidate(std::string_view removed_path) {
  if (!valid_) return;
  if (removed_path.empty() || path_ == removed_path ||
      (path_.size() > removed_path.size() && path_.starts_with(removed_path) &&
       path_[removed_path.size()] == '/')) {
    Clear();
  }
}

void ParentDirCache::Clear() {
  valid_ = false;
  fd_.reset();
}

}  // namespace berth::archive
