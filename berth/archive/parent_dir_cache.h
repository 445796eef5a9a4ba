// File: berth/archive/parent_dir_cache.h
//
// ParentDirCache holds the directory a TarApplier opened last as the parent of a member, so that
// the next member in the same directory (tars group members by directory) needs no openat2(2).
// It caches one directory: its root-relative path, an O_PATH fd it owns, its setgid bit and
// group (a new entry in a setgid directory takes the directory's group, which decides whether a
// chown is needed) and whether it has a default ACL (which new entries inherit).
//
// The cache knows nothing of the filesystem beyond the fstat(2) in Insert(): the applier must
// call Invalidate() for every path it removes, so that a cached fd never stands for a directory
// that was replaced.
//
// Thread safety: one thread at a time.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "berth/base/result.h"
#include "berth/base/unique_fd.h"

namespace berth::archive {

class ParentDirCache {
 public:
  // The fd of the cached directory if it is `path`, else -1. The fd stays owned by the cache and
  // valid until the next Insert(), Invalidate() that hits it, or Clear().
  int Find(std::string_view path) const;

  // Caches `fd` (an open directory) as the directory `path` and returns its raw fd. Reads the
  // setgid bit and group with fstat(2), and whether it has a default ACL; an error names `path`.
  Result<int> Insert(std::string path, UniqueFd fd);

  // Marks the cache empty before a lookup that may fail; the last directory's setgid bit and
  // group stay readable.
  void Forget() { valid_ = false; }

  // Drops the cached directory if `removed_path` (root-relative) is it or one of its ancestors;
  // an empty `removed_path` (the root) drops it whatever it is.
  void Invalidate(std::string_view removed_path);

  // Drops the cached directory and closes its fd.
  void Clear();

  // Whether a directory is cached.
  bool valid() const { return valid_; }
  // The setgid bit and group of the directory cached last (also after Forget()).
  bool setgid() const { return setgid_; }
  gid_t gid() const { return gid_; }
  // Whether the directory cached last has a system.posix_acl_default xattr.
  bool default_acl() const { return default_acl_; }

 private:
  bool valid_ = false;
  std::string path_;
  UniqueFd fd_;
  bool setgid_ = false;
  gid_t gid_ = 0;
  bool default_acl_ = false;
};

}  // namespace berth::archive
