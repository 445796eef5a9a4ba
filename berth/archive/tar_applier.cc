#include "berth/archive/tar_applier.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <optional>
#include <utility>

#include "berth/archive/whiteouts.h"
#include "berth/base/file_util.h"
#include "berth/base/log.h"

namespace berth::archive {
namespace {

constexpr char kOverlayOpaqueXattr[] = "trusted.overlay.opaque";
constexpr char kUserOverlayOpaqueXattr[] = "user.overlay.opaque";

// openat2(2) through syscall(): glibc 2.36 has no wrapper. Retries EAGAIN (a concurrent rename
// elsewhere in the tree) and EINTR a few times.
int OpenInRoot(int root_fd, const char* path, uint64_t flags) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  for (int attempt = 0; attempt < 16; ++attempt) {
    long fd = syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
    if (fd >= 0) return static_cast<int>(fd);
    if (errno != EAGAIN && errno != EINTR) return -1;
  }
  return -1;
}

std::string ProcPath(int fd) { return fmt::format("/proc/self/fd/{}", fd); }

timespec ToTimespec(TarTime time) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(time.seconds);
  ts.tv_nsec = static_cast<long>(time.nanoseconds);
  return ts;
}

unsigned ReadUmask() {
  auto status = ReadFile("/proc/self/status", 1 << 20);
  if (status) {
    size_t at = status->find("Umask:");
    if (at != std::string::npos) {
      return static_cast<unsigned>(std::strtoul(status->c_str() + at + 6, nullptr, 8)) & 0777;
    }
  }
  return 0777;  // Unknown: always chmod.
}

Error EntryErrno(int errnum, std::string_view what, std::string_view path) {
  return ErrnoError(errnum, fmt::format("{} \"{}\"", what, path));
}

std::string_view TypeName(TarEntryType type) {
  switch (type) {
    case TarEntryType::kRegular:
      return "regular";
    case TarEntryType::kDirectory:
      return "directory";
    case TarEntryType::kSymlink:
      return "symlink";
    case TarEntryType::kHardlink:
      return "hardlink";
    case TarEntryType::kCharDevice:
      return "char-device";
    case TarEntryType::kBlockDevice:
      return "block-device";
    case TarEntryType::kFifo:
      return "fifo";
  }
  return "unknown";
}

// Whether the symlink target `target`, met in the directory `dir_path` (root-relative), leads
// out of the root when read as a path: absolute, or climbing above the root with "..".
bool LeavesRoot(std::string_view dir_path, std::string_view target) {
  if (target.starts_with('/')) return true;
  long depth = dir_path.empty() ? 0 : std::count(dir_path.begin(), dir_path.end(), '/') + 1;
  size_t pos = 0;
  while (pos <= target.size()) {
    size_t slash = target.find('/', pos);
    if (slash == std::string_view::npos) slash = target.size();
    std::string_view component = target.substr(pos, slash - pos);
    pos = slash + 1;
    if (component.empty() || component == ".") continue;
    depth += component == ".." ? -1 : 1;
    if (depth < 0) return true;
  }
  return false;
}

// The error for the parent directory `path` of an entry, found as `name` in the directory
// `dir_fd` (`dir_path`, root-relative), that exists but does not resolve to a directory inside
// the root: a symlink whose target is missing there. Ok if it is no symlink (it changed meanwhile;
// the caller's next open reports it).
Result<void> RefuseDanglingParent(int dir_fd, std::string_view dir_path, const std::string& name,
                                  std::string_view path) {
  char buffer[PATH_MAX + 1];
  ssize_t n = readlinkat(dir_fd, name.c_str(), buffer, sizeof(buffer));
  if (n < 0) return Ok();
  std::string_view target(buffer, static_cast<size_t>(n));
  if (LeavesRoot(dir_path, target)) {
    return Fail(ErrorCode::kPermissionDenied,
                fmt::format("parent \"{}\" is a symlink to {}, outside the layer (symlinks are "
                            "resolved inside the layer, where that path does not exist); the "
                            "layer is refused",
                            path, target));
  }
  return Fail(ErrorCode::kInvalidArgument,
              fmt::format("parent \"{}\" is a symlink to {}, which does not exist in the layer; "
                          "the layer is refused",
                          path, target));
}

// Removes `name` in `dir_fd` and everything below it, never following symlinks.
Result<void> RemoveAllAt(int dir_fd, const char* name) {
  if (unlinkat(dir_fd, name, 0) == 0 || errno == ENOENT) return Ok();
  if (errno != EISDIR && errno != EPERM)
    return Fail(ErrnoError(errno, fmt::format("unlink {}", name)));
  int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Fail(ErrnoError(errno, fmt::format("open directory {} to remove it", name)));
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    int saved = errno;
    close(fd);
    return Fail(ErrnoError(saved, "fdopendir"));
  }
  std::vector<std::string> children;
  while (dirent* child = readdir(dir)) {
    std::string_view child_name = child->d_name;
    if (child_name == "." || child_name == "..") continue;
    children.emplace_back(child_name);
  }
  for (const std::string& child : children) {
    auto removed = RemoveAllAt(dirfd(dir), child.c_str());
    if (!removed) {
      closedir(dir);
      return removed;
    }
  }
  closedir(dir);
  if (unlinkat(dir_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return Fail(ErrnoError(errno, fmt::format("rmdir {}", name)));
  }
  return Ok();
}

bool IsWhiteoutDevice(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == 0; }

// Whether the directory `fd` (any open mode) has a default ACL, which new entries inherit.
bool HasDefaultAcl(int fd) {
  return getxattr(ProcPath(fd).c_str(), "system.posix_acl_default", nullptr, 0) >= 0;
}

// Whether the directory `fd` (any open mode) is marked opaque for overlayfs.
bool IsOpaque(int fd) {
  const std::string proc = ProcPath(fd);
  for (const char* name : {kOverlayOpaqueXattr, kUserOverlayOpaqueXattr}) {
    char value[2];
    ssize_t n = getxattr(proc.c_str(), name, value, sizeof(value));
    if (n == 1 && value[0] == 'y') return true;
  }
  return false;
}

// What one overlay layer directory says about `path` (root-relative, non-empty). Sets
// *opaque_above when an ancestor of `path` in this layer is an opaque directory (lower layers
// cannot show `path` then).
enum class LayerView {
  kMissing,    // the layer does not have it
  kDirectory,  // a directory (its stat in *st)
  kHidden,     // a whiteout, a non-directory, or below a non-directory ancestor
};

Result<LayerView> LookInLayer(int layer_fd, std::string_view path, struct stat* st,
                              bool* opaque_above) {
  *opaque_above = false;
  std::string prefix;
  size_t pos = 0;
  while (true) {
    size_t slash = path.find('/', pos);
    prefix.assign(path.substr(0, slash));
    UniqueFd fd(OpenInRoot(layer_fd, prefix.c_str(), O_PATH | O_NOFOLLOW));
    if (!fd) {
      if (errno == ENOENT || errno == ENOTDIR) return LayerView::kMissing;
      return Fail(EntryErrno(errno, "look up directory", prefix));
    }
    if (fstat(fd.get(), st) != 0) return Fail(EntryErrno(errno, "stat", prefix));
    if (!S_ISDIR(st->st_mode)) return LayerView::kHidden;
    if (slash == std::string_view::npos) return LayerView::kDirectory;
    if (IsOpaque(fd.get())) *opaque_above = true;
    pos = slash + 1;
  }
}

// The newest mtime of the entries in the directory `dir_fd`, whiteouts excluded; false if none.
Result<bool> NewestChildMtime(int dir_fd, std::string_view path, timespec* newest) {
  int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Fail(EntryErrno(errno, "open directory", path));
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    int saved = errno;
    close(fd);
    return Fail(EntryErrno(saved, "list directory", path));
  }
  bool found = false;
  while (dirent* child = readdir(dir)) {
    std::string_view name = child->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (fstatat(dirfd(dir), child->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (IsWhiteoutDevice(st)) continue;
    if (!found || st.st_mtim.tv_sec > newest->tv_sec ||
        (st.st_mtim.tv_sec == newest->tv_sec && st.st_mtim.tv_nsec > newest->tv_nsec)) {
      *newest = st.st_mtim;
      found = true;
    }
  }
  closedir(dir);
  return found;
}

// A filesystem node to set metadata on: an open fd (regular files, directories), or a name in a
// parent directory that is never followed (symlinks, device nodes and fifos).
class Node {
 public:
  static Node Open(int fd) { return Node(fd, -1, nullptr); }
  static Node At(int parent_fd, const std::string& base) { return Node(-1, parent_fd, &base); }

  int Chown(uid_t uid, gid_t gid) const {
    return fd_ >= 0 ? fchown(fd_, uid, gid)
                    : fchownat(parent_fd_, base_->c_str(), uid, gid, AT_SYMLINK_NOFOLLOW);
  }
  // By name only for nodes the applier just created with mknodat, so no symlink is met.
  int Chmod(mode_t mode) const {
    return fd_ >= 0 ? fchmod(fd_, mode) : fchmodat(parent_fd_, base_->c_str(), mode, 0);
  }
  int SetXattr(const std::string& name, const std::string& value) const {
    if (fd_ >= 0) return fsetxattr(fd_, name.c_str(), value.data(), value.size(), 0);
    std::string path = fmt::format("{}/{}", ProcPath(parent_fd_), *base_);
    return lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0);
  }
  int RemoveXattr(const std::string& name) const {
    if (fd_ >= 0) return fremovexattr(fd_, name.c_str());
    std::string path = fmt::format("{}/{}", ProcPath(parent_fd_), *base_);
    return lremovexattr(path.c_str(), name.c_str());
  }
  int SetTimes(const timespec times[2]) const {
    return fd_ >= 0 ? futimens(fd_, times)
                    : utimensat(parent_fd_, base_->c_str(), times, AT_SYMLINK_NOFOLLOW);
  }
  // A path for the follow-symlinks xattr calls. REQUIRES: an open fd.
  std::string FdPath() const { return ProcPath(fd_); }

 private:
  Node(int fd, int parent_fd, const std::string* base)
      : fd_(fd), parent_fd_(parent_fd), base_(base) {}

  int fd_;
  int parent_fd_;
  const std::string* base_;
};

using XattrList = std::vector<std::pair<std::string, std::string>>;

// overlayfs's own metadata (opaque, redirect, origin, ...), in either of its namespaces: never
// taken from an archive or a lower layer, never removed by inheritance.
bool IsOverlayXattr(std::string_view name) {
  return name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.");
}

// What to do with xattrs a node has but Metadata::xattrs does not list.
enum class OtherXattrs {
  kKeep,
  kRemove,  // Except overlayfs's own (REQUIRES: the node is an open fd).
  // Only the POSIX ACLs a new node inherited from its parent's default ACL.
  kRemoveInheritedAcls,
};

const std::string kAclXattrs[] = {"system.posix_acl_access", "system.posix_acl_default"};

bool Lists(const XattrList* xattrs, std::string_view name) {
  return xattrs != nullptr && std::any_of(xattrs->begin(), xattrs->end(),
                                          [&](const auto& xattr) { return xattr.first == name; });
}

// What to set on a node; each step is skipped when its field is empty.
struct Metadata {
  std::optional<std::pair<uid_t, gid_t>> owner;
  std::optional<mode_t> mode;
  // xattrs to set: trusted.overlay.* is dropped (only the applier writes overlayfs metadata)
  // and EOPNOTSUPP is ignored for user.* (see tar_applier.h).
  const XattrList* xattrs = nullptr;
  OtherXattrs other_xattrs = OtherXattrs::kKeep;
  // Or every xattr of this open file (a copy of a lower layer's file).
  int copy_xattrs_from = -1;
  std::optional<std::array<timespec, 2>> times;
};

// Removes the xattrs of `node` (an open fd) that `keep` does not list, except overlayfs's own:
// a directory made by mkdir may have inherited a default ACL its lower twin does not have.
Result<void> RemoveOtherXattrs(const Node& node, const XattrList* keep, std::string_view path) {
  BERTH_ASSIGN_OR_RETURN(auto present, ReadXattrs(node.FdPath(), /*follow_symlinks=*/true));
  for (const auto& [name, value] : present) {
    if (IsOverlayXattr(name)) continue;
    if (Lists(keep, name)) continue;
    if (removexattr(node.FdPath().c_str(), name.c_str()) != 0 && errno != ENODATA) {
      return Fail(ErrnoError(errno, fmt::format("remove xattr {} from \"{}\"", name, path)));
    }
  }
  return Ok();
}

// Sets `metadata` on `node` (the entry `path`, described as `kind` in errors when not empty) in
// the one order that loses nothing: owner first, since chown clears setuid/setgid and
// security.capability; then mode; then xattrs; then times, since every other change touches
// ctime and some filesystems mtime.
Result<void> SetMetadata(const Node& node, const Metadata& metadata, std::string_view path,
                         std::string_view kind = {}) {
  auto what = [&](std::string_view action) {
    return kind.empty() ? std::string(action) : fmt::format("{} {}", action, kind);
  };
  if (metadata.owner && node.Chown(metadata.owner->first, metadata.owner->second) != 0) {
    return Fail(EntryErrno(errno, what("chown"), path));
  }
  if (metadata.mode && node.Chmod(*metadata.mode) != 0) {
    return Fail(EntryErrno(errno, what("chmod"), path));
  }
  if (metadata.other_xattrs == OtherXattrs::kRemove) {
    BERTH_RETURN_IF_ERROR(RemoveOtherXattrs(node, metadata.xattrs, path));
  }
  if (metadata.other_xattrs == OtherXattrs::kRemoveInheritedAcls) {
    for (const std::string& name : kAclXattrs) {
      if (Lists(metadata.xattrs, name) || node.RemoveXattr(name) == 0) continue;
      if (errno == ENODATA || errno == EOPNOTSUPP || errno == ENOTSUP) continue;
      return Fail(ErrnoError(errno, fmt::format("remove inherited {} from \"{}\"", name, path)));
    }
  }
  if (metadata.xattrs != nullptr) {
    for (const auto& [name, value] : *metadata.xattrs) {
      if (name.starts_with("trusted.overlay.")) continue;
      if (node.SetXattr(name, value) == 0) continue;
      int saved = errno;
      if ((saved == EOPNOTSUPP || saved == ENOTSUP) && name.starts_with("user.")) continue;
      return Fail(ErrnoError(saved, fmt::format("set xattr {} on \"{}\"", name, path)));
    }
  }
  if (metadata.copy_xattrs_from >= 0) {
    BERTH_RETURN_IF_ERROR(WithContext(
        CopyXattrs(ProcPath(metadata.copy_xattrs_from), node.FdPath(), /*follow_symlinks=*/true),
        fmt::format("copy xattrs onto \"{}\"", path)));
  }
  if (metadata.times && node.SetTimes(metadata.times->data()) != 0) {
    return Fail(EntryErrno(errno, what("set times on"), path));
  }
  return Ok();
}

// Which of an entry's attributes to set: owner and mode only where they differ from what the
// node got at creation; times now, or for directories in TarApplier::Finish().
enum class Times { kNow, kLater };
struct EntrySteps {
  bool chown;
  bool chmod;
  Times times;
  // kRemoveInheritedAcls for a node just created in a directory with a default ACL: the
  // archive, not the parent, says what the entry's ACLs are.
  OtherXattrs other_xattrs = OtherXattrs::kKeep;
};

// The steps for a node the applier just created (not a directory): owner and mode as needed,
// times now; with `inherited_acls` (its directory has a default ACL) the mode always, and the
// inherited ACLs removed.
EntrySteps NewNodeSteps(bool chown, bool chmod, bool inherited_acls) {
  return {.chown = chown,
          .chmod = chmod || inherited_acls,
          .times = Times::kNow,
          .other_xattrs = inherited_acls ? OtherXattrs::kRemoveInheritedAcls : OtherXattrs::kKeep};
}

// Sets the attributes the archive gives `entry` (at the cleaned `path`) on `node`.
Result<void> SetEntryMetadata(const TarEntry& entry, const Node& node, EntrySteps steps,
                              std::string_view path) {
  Metadata metadata{.xattrs = &entry.xattrs, .other_xattrs = steps.other_xattrs};
  if (steps.chown) metadata.owner = {entry.uid, entry.gid};
  if (steps.chmod) metadata.mode = entry.mode;
  if (steps.times == Times::kNow) {
    metadata.times = {ToTimespec(entry.has_atime ? entry.atime : entry.mtime),
                      ToTimespec(entry.mtime)};
  }
  return SetMetadata(node, metadata, path);
}

// The xattrs of the directory `path` in the layer `layer_fd`, overlayfs's own left out.
Result<XattrList> LowerDirectoryXattrs(int layer_fd, std::string_view path) {
  std::string target(path);
  UniqueFd dir(OpenInRoot(layer_fd, target.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW));
  if (!dir) return Fail(EntryErrno(errno, "open lower-layer directory", path));
  BERTH_ASSIGN_OR_RETURN(auto all, ReadXattrs(ProcPath(dir.get()), /*follow_symlinks=*/true));
  XattrList xattrs;
  for (auto& [name, value] : all) {
    if (!IsOverlayXattr(name)) xattrs.emplace_back(name, std::move(value));
  }
  return xattrs;
}

}  // namespace

Result<LowerLayers> LowerLayers::Open(const std::vector<std::filesystem::path>& dirs) {
  LowerLayers layers;
  for (const auto& dir : dirs) {
    UniqueFd fd(open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return Fail(ErrnoError(errno, fmt::format("open lower dir {}", dir.string())));
    layers.fds_.push_back(fd.get());
    layers.owned_.push_back(std::move(fd));
  }
  return layers;
}

Result<std::optional<LowerDirectory>> FindLowerDirectory(const std::vector<int>& lower_root_fds,
                                                         std::string_view path) {
  for (int lower : lower_root_fds) {
    struct stat st;
    bool opaque_above = false;
    BERTH_ASSIGN_OR_RETURN(LayerView view, LookInLayer(lower, path, &st, &opaque_above));
    if (view == LayerView::kHidden) return std::nullopt;
    if (view == LayerView::kMissing) {
      if (opaque_above) return std::nullopt;
      continue;
    }
    // The merged view must show the lower directory's xattrs (ACLs, file capabilities of a
    // directory, user comments), as overlayfs copy-up does; not overlayfs's own.
    BERTH_ASSIGN_OR_RETURN(XattrList xattrs, LowerDirectoryXattrs(lower, path));
    return LowerDirectory{.st = st, .xattrs = std::move(xattrs)};
  }
  return std::nullopt;
}

Result<bool> InheritLowerDirectory(int root_fd, std::string_view path,
                                   const std::vector<int>& lower_root_fds,
                                   bool preserve_ownership) {
  std::string target(path);
  UniqueFd dir(OpenInRoot(root_fd, target.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
  if (!dir) {
    if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) {
      return Fail(ErrorCode::kNotFound, fmt::format("no directory \"{}\" in the layer", path));
    }
    return Fail(EntryErrno(errno, "open directory", path));
  }
  if (path.empty()) return false;  // The root belongs to the snapshotter.
  struct stat st;
  bool opaque_above = false;
  // An opaque ancestor in the layer itself hides every lower layer.
  BERTH_ASSIGN_OR_RETURN(LayerView upper, LookInLayer(root_fd, path, &st, &opaque_above));
  if (upper != LayerView::kDirectory) {
    return Fail(ErrorCode::kNotFound, fmt::format("no directory \"{}\" in the layer", path));
  }
  if (opaque_above) return false;
  BERTH_ASSIGN_OR_RETURN(std::optional<LowerDirectory> lower,
                         FindLowerDirectory(lower_root_fds, path));
  if (!lower) return false;
  Metadata inherited{.mode = lower->st.st_mode & 07777,
                     .xattrs = &lower->xattrs,
                     .other_xattrs = OtherXattrs::kRemove,
                     .times = {{lower->st.st_atim, lower->st.st_mtim}}};
  if (preserve_ownership) inherited.owner = {lower->st.st_uid, lower->st.st_gid};
  BERTH_RETURN_IF_ERROR(SetMetadata(Node::Open(dir.get()), inherited, path, "implicit directory"));
  return true;
}

Result<size_t> InheritLowerDirectories(const std::filesystem::path& root,
                                       const std::vector<std::string>& dirs,
                                       const std::vector<std::filesystem::path>& lower_dirs,
                                       bool preserve_ownership) {
  if (dirs.empty() || lower_dirs.empty()) return size_t{0};
  UniqueFd root_fd(open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return Fail(ErrnoError(errno, fmt::format("open layer root {}", root.string())));
  BERTH_ASSIGN_OR_RETURN(LowerLayers lowers, LowerLayers::Open(lower_dirs));
  size_t inherited = 0;
  // Children first, though the order does not matter: no change here touches a parent.
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    BERTH_ASSIGN_OR_RETURN(
        bool done, InheritLowerDirectory(root_fd.get(), *it, lowers.fds(), preserve_ownership));
    if (done) ++inherited;
  }
  return inherited;
}

Result<void> CleanArchivePath(std::string_view name, std::string& out) {
  out.clear();
  size_t pos = 0;
  while (pos <= name.size()) {
    size_t slash = name.find('/', pos);
    if (slash == std::string_view::npos) slash = name.size();
    std::string_view component = name.substr(pos, slash - pos);
    pos = slash + 1;
    if (component.empty() || component == ".") continue;
    if (component == "..") {
      return Fail(ErrorCode::kPermissionDenied,
                  fmt::format("entry \"{}\" has a \"..\" component and could escape the root; "
                              "the layer is refused",
                              name));
    }
    if (!out.empty()) out.push_back('/');
    out.append(component);
  }
  return Ok();
}

TarApplier::TarApplier(UniqueFd root, TarApplierOptions options)
    : root_(std::move(root)),
      options_(std::move(options)),
      euid_(geteuid()),
      egid_(getegid()),
      umask_(ReadUmask()),
      trace_(log::Enabled(log::Level::kTrace)) {}

TarApplier::~TarApplier() = default;

Result<std::unique_ptr<TarApplier>> TarApplier::Create(int root_fd, TarApplierOptions options) {
  int fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 3);
  if (fd < 0) return Fail(ErrnoError(errno, "dup root directory fd"));
  UniqueFd root(fd);
  struct stat st;
  if (fstat(root.get(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument, "layer root is not a directory");
  }
  std::unique_ptr<TarApplier> applier(new TarApplier(std::move(root), std::move(options)));
  applier->root_default_acl_ = HasDefaultAcl(applier->root_.get());
  for (const auto& lower : applier->options_.lower_dirs) {
    int lower_fd = open(lower.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (lower_fd < 0) {
      return Fail(ErrnoError(errno, fmt::format("open lower dir {}", lower.string())));
    }
    applier->lower_roots_.emplace_back(lower_fd);
  }
  return applier;
}

Result<void> TarApplier::CreateParents() {
  // Slow path: some ancestor is missing. Walk prefix by prefix, each resolved in the root.
  size_t pos = 0;
  while (pos < parent_path_.size()) {
    size_t slash = parent_path_.find('/', pos);
    if (slash == std::string::npos) slash = parent_path_.size();
    scratch_.assign(parent_path_, 0, slash);
    int fd = OpenInRoot(root_.get(), scratch_.c_str(), O_PATH | O_DIRECTORY);
    if (fd >= 0) {
      close(fd);
    } else if (errno == ENOENT) {
      size_t last = scratch_.rfind('/');
      std::string up = last == std::string::npos ? std::string() : scratch_.substr(0, last);
      std::string name = last == std::string::npos ? scratch_ : scratch_.substr(last + 1);
      UniqueFd up_fd(up.empty() ? fcntl(root_.get(), F_DUPFD_CLOEXEC, 3)
                                : OpenInRoot(root_.get(), up.c_str(), O_PATH | O_DIRECTORY));
      if (!up_fd) return Fail(EntryErrno(errno, "open directory", up));
      if (options_.whiteout_mode == WhiteoutMode::kDelete) {
        BERTH_RETURN_IF_ERROR(RememberLowerDirectoryTimes(up, up_fd.get()));
      }
      if (mkdirat(up_fd.get(), name.c_str(), 0755) == 0) {
        if (trace_) log::Trace("archive.implicit_dir", {{"path", scratch_}, {"action", "create"}});
        created_parents_.push_back(scratch_);
        implicit_.insert(scratch_);
      } else if (errno == EEXIST) {
        // It exists but does not resolve to a directory in the root: a symlink leading nowhere.
        BERTH_RETURN_IF_ERROR(RefuseDanglingParent(up_fd.get(), up, name, scratch_));
      } else {
        return Fail(EntryErrno(errno, "create parent directory", scratch_));
      }
      if (options_.whiteout_mode == WhiteoutMode::kDelete) added_.insert(scratch_);
    } else {
      return Fail(EntryErrno(errno, "open parent directory", scratch_));
    }
    pos = slash + 1;
  }
  return Ok();
}

Result<int> TarApplier::Parent(bool create) {
  if (parent_path_.empty()) return root_.get();
  if (int cached = parents_.Find(parent_path_); cached >= 0) return cached;
  parents_.Forget();
  int fd = OpenInRoot(root_.get(), parent_path_.c_str(), O_PATH | O_DIRECTORY);
  if (fd < 0 && errno == ENOENT && create) {
    BERTH_RETURN_IF_ERROR(CreateParents());
    fd = OpenInRoot(root_.get(), parent_path_.c_str(), O_PATH | O_DIRECTORY);
  }
  if (fd < 0) {
    int saved = errno;
    if ((saved == ENOENT || saved == ENOTDIR) && !create) return -1;
    if (saved == ENOTDIR) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("parent \"{}\" is not a directory", parent_path_));
    }
    return Fail(EntryErrno(saved, "open parent directory", parent_path_));
  }
  return parents_.Insert(parent_path_, UniqueFd(fd));
}

bool TarApplier::NeedsChown(const TarEntry& entry) const {
  if (!options_.preserve_ownership) return false;
  gid_t new_gid = egid_;
  if (!parent_path_.empty() && parents_.valid() && parents_.setgid()) new_gid = parents_.gid();
  if (parent_path_.empty()) return true;  // Root's setgid bit not tracked: be exact.
  return entry.uid != euid_ || entry.gid != new_gid;
}

bool TarApplier::ParentHasDefaultAcl() const {
  return parent_path_.empty() ? root_default_acl_ : parents_.valid() && parents_.default_acl();
}

bool TarApplier::NeedsChmod(const TarEntry& entry, bool is_directory) const {
  if ((entry.mode & 07000) != 0) return true;
  if ((entry.mode & 0777 & umask_) != 0) return true;
  // mkdir in a setgid directory inherits setgid.
  if (is_directory && (parent_path_.empty() || parents_.setgid())) return true;
  return false;
}

Result<void> TarApplier::RemoveExisting(int parent_fd, const std::string& base,
                                        std::string_view path) {
  parents_.Invalidate(path);
  return WithContext(RemoveAllAt(parent_fd, base.c_str()),
                     fmt::format("replace existing \"{}\"", path));
}

Result<void> TarApplier::OnEntry(const TarEntry& entry) {
  ++stats_.entries;
  auto result = Apply(entry);
  if (!result) {
    file_.reset();
    return WithContext(std::move(result), fmt::format("apply layer entry \"{}\"", entry.path));
  }
  return Ok();
}

void TarApplier::TraceEntry(const TarEntry& entry, std::string_view action,
                            std::string_view detail) const {
  if (!trace_) return;
  if (detail.empty()) {
    log::Trace("archive.entry",
               {{"path", entry.path}, {"type", TypeName(entry.type)}, {"action", action}});
  } else {
    log::Trace("archive.entry", {{"path", entry.path},
                                 {"type", TypeName(entry.type)},
                                 {"action", action},
                                 {"detail", detail}});
  }
}

Result<void> TarApplier::Apply(const TarEntry& entry) {
  BERTH_RETURN_IF_ERROR(CleanArchivePath(entry.path, path_));
  size_t slash = path_.rfind('/');
  if (slash == std::string::npos) {
    parent_path_.clear();
    base_ = path_;
  } else {
    parent_path_.assign(path_, 0, slash);
    base_.assign(path_, slash + 1);
  }
  if (base_.starts_with(kWhiteoutPrefix)) return ApplyWhiteout(entry);
  if (!implicit_.empty()) implicit_.erase(path_);  // The layer defines it after all.
  if (path_.empty()) {
    if (entry.type == TarEntryType::kDirectory) {
      TraceEntry(entry, "skip", "the root directory belongs to the caller");
      return Ok();
    }
    return Fail(ErrorCode::kInvalidArgument, "a non-directory entry names the root itself");
  }
  if (trace_) {
    for (const auto& xattr : entry.xattrs) {
      if (xattr.first.starts_with("trusted.overlay.")) {
        TraceEntry(entry, "drop-xattr", xattr.first);
      }
    }
  }
  BERTH_ASSIGN_OR_RETURN(int parent_fd, Parent(/*create=*/true));
  if (options_.whiteout_mode == WhiteoutMode::kDelete) {
    BERTH_RETURN_IF_ERROR(RememberLowerDirectoryTimes(parent_path_, parent_fd));
    added_.insert(path_);
    lower_directory_times_.erase(path_);  // The layer gives it times of its own.
  }
  if (entry.type != TarEntryType::kHardlink) TraceEntry(entry, "create");
  switch (entry.type) {
    case TarEntryType::kRegular:
      return ApplyRegular(entry, parent_fd);
    case TarEntryType::kDirectory:
      return ApplyDirectory(entry, parent_fd);
    case TarEntryType::kSymlink:
      return ApplySymlink(entry, parent_fd);
    case TarEntryType::kHardlink:
      return ApplyHardlink(entry, parent_fd);
    case TarEntryType::kCharDevice:
    case TarEntryType::kBlockDevice:
    case TarEntryType::kFifo:
      return ApplyNode(entry, parent_fd);
  }
  return Ok();
}

Result<void> TarApplier::ApplyRegular(const TarEntry& entry, int parent_fd) {
  int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  mode_t create_mode = entry.mode & 0777;
  int fd = openat(parent_fd, base_.c_str(), flags, create_mode);
  if (fd < 0 && errno == EEXIST) {
    BERTH_RETURN_IF_ERROR(RemoveExisting(parent_fd, base_, path_));
    fd = openat(parent_fd, base_.c_str(), flags, create_mode);
  }
  if (fd < 0) return Fail(EntryErrno(errno, "create file", path_));
  file_.reset(fd);
  file_entry_ = &entry;
  file_offset_ = 0;
  return Ok();
}

Result<void> TarApplier::OnData(uint64_t offset, std::string_view data) {
  if (!file_) return Ok();
  const char* p = data.data();
  size_t left = data.size();
  bool positional = offset != file_offset_;
  while (left > 0) {
    ssize_t n = positional ? pwrite(file_.get(), p, left, static_cast<off_t>(offset))
                           : write(file_.get(), p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int saved = errno;
      file_.reset();
      return Fail(EntryErrno(saved, "write file", path_));
    }
    p += n;
    left -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  if (positional) {
    // Keep the file position in step for the next sequential write.
    if (lseek(file_.get(), static_cast<off_t>(offset), SEEK_SET) < 0) {
      return Fail(EntryErrno(errno, "seek file", path_));
    }
  }
  file_offset_ = offset;
  stats_.file_bytes_written += data.size();
  return Ok();
}

Result<void> TarApplier::OnEntryEnd() {
  if (!file_) return Ok();
  const TarEntry& entry = *file_entry_;
  auto status = [&]() -> Result<void> {
    int fd = file_.get();
    if (entry.sparse && ftruncate(fd, static_cast<off_t>(entry.size)) != 0) {
      return Fail(EntryErrno(errno, "extend sparse file", path_));
    }
    BERTH_RETURN_IF_ERROR(SetEntryMetadata(
        entry, Node::Open(fd),
        NewNodeSteps(NeedsChown(entry), NeedsChmod(entry, false), ParentHasDefaultAcl()), path_));
    if (options_.sync == SyncPolicy::kFsyncEachFile && fsync(fd) != 0) {
      return Fail(EntryErrno(errno, "fsync", path_));
    }
    return Ok();
  }();
  return CloseFile(
      WithContext(std::move(status), fmt::format("apply layer entry \"{}\"", entry.path)));
}

Result<void> TarApplier::CloseFile(Result<void> status) {
  int fd = file_.release();
  file_entry_ = nullptr;
  if (close(fd) != 0 && status && errno != EINTR) {
    return Fail(EntryErrno(errno, "close", path_));
  }
  return status;
}

Result<void> TarApplier::ApplyDirectory(const TarEntry& entry, int parent_fd) {
  mode_t create_mode = entry.mode & 0777;
  bool fresh = true;
  struct stat existing;
  if (mkdirat(parent_fd, base_.c_str(), create_mode) != 0) {
    if (errno != EEXIST) return Fail(EntryErrno(errno, "create directory", path_));
    if (fstatat(parent_fd, base_.c_str(), &existing, AT_SYMLINK_NOFOLLOW) != 0) {
      return Fail(EntryErrno(errno, "stat", path_));
    }
    if (S_ISDIR(existing.st_mode)) {
      fresh = false;
    } else {
      BERTH_RETURN_IF_ERROR(RemoveExisting(parent_fd, base_, path_));
      if (mkdirat(parent_fd, base_.c_str(), create_mode) != 0) {
        return Fail(EntryErrno(errno, "create directory", path_));
      }
    }
  }
  bool chown_needed = fresh ? NeedsChown(entry)
                            : options_.preserve_ownership &&
                                  (existing.st_uid != entry.uid || existing.st_gid != entry.gid);
  const bool inherited_acls = fresh && ParentHasDefaultAcl();
  bool chmod_needed = fresh ? NeedsChmod(entry, true) || inherited_acls
                            : chown_needed || (existing.st_mode & 07777) != entry.mode;
  if (chown_needed || chmod_needed || !entry.xattrs.empty()) {
    UniqueFd fd(openat(parent_fd, base_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return Fail(EntryErrno(errno, "open directory", path_));
    BERTH_RETURN_IF_ERROR(SetEntryMetadata(
        entry, Node::Open(fd.get()),
        {.chown = chown_needed,
         .chmod = chmod_needed,
         .times = Times::kLater,
         .other_xattrs = inherited_acls ? OtherXattrs::kRemoveInheritedAcls : OtherXattrs::kKeep},
        path_));
  }
  // Its default ACL may have changed since it was cached as a parent.
  parents_.Invalidate(path_);
  directory_times_.push_back({path_, entry.has_atime ? entry.atime : entry.mtime, entry.mtime});
  return Ok();
}

Result<void> TarApplier::ApplySymlink(const TarEntry& entry, int parent_fd) {
  if (symlinkat(entry.link_target.c_str(), parent_fd, base_.c_str()) != 0) {
    if (errno != EEXIST) return Fail(EntryErrno(errno, "create symlink", path_));
    BERTH_RETURN_IF_ERROR(RemoveExisting(parent_fd, base_, path_));
    if (symlinkat(entry.link_target.c_str(), parent_fd, base_.c_str()) != 0) {
      return Fail(EntryErrno(errno, "create symlink", path_));
    }
  }
  // A symlink has no mode of its own.
  return SetEntryMetadata(entry, Node::At(parent_fd, base_),
                          {.chown = NeedsChown(entry), .chmod = false, .times = Times::kNow},
                          path_);
}

Result<void> TarApplier::ApplyHardlink(const TarEntry& entry, int parent_fd) {
  std::string target;
  BERTH_RETURN_IF_ERROR(
      WithContext(CleanArchivePath(entry.link_target, target), "hardlink target"));
  if (target.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "hardlink target is the root directory");
  }
  if (target == path_) {
    TraceEntry(entry, "skip", "a hardlink to itself");
    return Ok();
  }
  TraceEntry(entry, "link", target);
  size_t slash = target.rfind('/');
  std::string target_parent = slash == std::string::npos ? std::string() : target.substr(0, slash);
  std::string target_base = slash == std::string::npos ? target : target.substr(slash + 1);
  UniqueFd target_parent_fd(
      target_parent.empty() ? fcntl(root_.get(), F_DUPFD_CLOEXEC, 3)
                            : OpenInRoot(root_.get(), target_parent.c_str(), O_PATH | O_DIRECTORY));
  int link_errno = 0;
  if (target_parent_fd) {
    if (linkat(target_parent_fd.get(), target_base.c_str(), parent_fd, base_.c_str(), 0) == 0) {
      return Ok();
    }
    link_errno = errno;
    if (link_errno == EEXIST) {
      BERTH_RETURN_IF_ERROR(RemoveExisting(parent_fd, base_, path_));
      // Removing may have invalidated parent_fd's cache entry but not the fd itself.
      BERTH_ASSIGN_OR_RETURN(parent_fd, Parent(true));
      if (linkat(target_parent_fd.get(), target_base.c_str(), parent_fd, base_.c_str(), 0) == 0) {
        return Ok();
      }
      link_errno = errno;
    }
  } else {
    link_errno = errno;
  }
  if (link_errno == ENOENT || link_errno == ENOTDIR) {
    if (options_.whiteout_mode == WhiteoutMode::kOverlay && !lower_roots_.empty()) {
      TraceEntry(entry, "copy-from-lower", "the target is not in this layer");
      return CopyFromLower(entry, target, parent_fd);
    }
    // kFailedPrecondition: under kOverlay the unpacker applies the layer again with its lower
    // layers given, since the target may be a lower layer's file.
    return Fail(ErrorCode::kFailedPrecondition,
                fmt::format("hardlink \"{}\" links to \"{}\", which {}", path_, entry.link_target,
                            options_.whiteout_mode == WhiteoutMode::kOverlay
                                ? "is not an earlier entry of this layer (it may be a file of a "
                                  "layer below, which was not available)"
                                : "neither this layer (as an earlier entry) nor the layers below "
                                  "it contain; the layer is broken"));
  }
  return Fail(EntryErrno(link_errno, fmt::format("hardlink to \"{}\" as", target), path_));
}

Result<void> TarApplier::CopyFromLower(const TarEntry& entry, std::string_view target,
                                       int parent_fd) {
  std::string target_string(target);
  for (const UniqueFd& lower : lower_roots_) {
    UniqueFd source(OpenInRoot(lower.get(), target_string.c_str(), O_PATH | O_NOFOLLOW));
    if (!source) {
      if (errno == ENOENT) continue;
      return Fail(EntryErrno(errno, "open lower-layer hardlink target", target));
    }
    struct stat st;
    if (fstat(source.get(), &st) != 0) return Fail(EntryErrno(errno, "stat", target));
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) break;  // Whited out below.
    if (!S_ISREG(st.st_mode)) {
      return Fail(ErrorCode::kUnimplemented,
                  fmt::format("hardlink to lower-layer \"{}\", which is not a regular file, "
                              "cannot be applied on overlay",
                              target));
    }
    UniqueFd in(open(ProcPath(source.get()).c_str(), O_RDONLY | O_CLOEXEC));
    if (!in) return Fail(EntryErrno(errno, "open lower-layer file", target));
    UniqueFd out(openat(parent_fd, base_.c_str(),
                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out && errno == EEXIST) {
      BERTH_RETURN_IF_ERROR(RemoveExisting(parent_fd, base_, path_));
      out.reset(openat(parent_fd, base_.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    }
    if (!out) return Fail(EntryErrno(errno, "create file", path_));
    BERTH_RETURN_IF_ERROR(
        WithContext(CopyFileData(in.get(), out.get(), target_string, path_),
                    fmt::format("copy lower-layer \"{}\" as the hardlink \"{}\"", target, path_)));
    stats_.file_bytes_written += static_cast<uint64_t>(st.st_size);
    Metadata copy{.mode = st.st_mode & 07777,
                  .other_xattrs = ParentHasDefaultAcl() ? OtherXattrs::kRemoveInheritedAcls
                                                        : OtherXattrs::kKeep,
                  .copy_xattrs_from = in.get(),
                  .times = {{st.st_atim, st.st_mtim}}};
    if (options_.preserve_ownership) copy.owner = {st.st_uid, st.st_gid};
    return WithContext(SetMetadata(Node::Open(out.get()), copy, path_),
                       fmt::format("copy the attributes of lower-layer \"{}\"", target));
  }
  return Fail(ErrorCode::kFailedPrecondition,
              fmt::format("hardlink \"{}\" links to \"{}\", which neither this layer (as an "
                          "earlier entry) nor the layers below it contain, or a layer above the "
                          "one holding it deleted it; the layer is broken",
                          path_, entry.link_target));
}

Result<void> TarApplier::ApplyNode(const TarEntry& entry, int parent_fd) {
  mode_t type = entry.type == TarEntryType::kCharDevice    ? S_IFCHR
                : entry.type == TarEntryType::kBlockDevice ? S_IFBLK
                                                           : S_IFIFO;
  dev_t device = type == S_IFIFO ? 0 : makedev(entry.device_major, entry.device_minor);
  mode_t mode = type | (entry.mode & 0777);
  if (mknodat(parent_fd, base_.c_str(), mode, device) != 0) {
    if (errno != EEXIST) return Fail(EntryErrno(errno, "create device node or fifo", path_));
    BERTH_RETURN_IF_ERROR(RemoveExisting(parent_fd, base_, path_));
    if (mknodat(parent_fd, base_.c_str(), mode, device) != 0) {
      return Fail(EntryErrno(errno, "create device node or fifo", path_));
    }
  }
  return SetEntryMetadata(
      entry, Node::At(parent_fd, base_),
      NewNodeSteps(NeedsChown(entry), NeedsChmod(entry, false), ParentHasDefaultAcl()), path_);
}

Result<void> TarApplier::ApplyWhiteout(const TarEntry& entry) {
  bool overlay = options_.whiteout_mode == WhiteoutMode::kOverlay;
  if (base_ == kOpaqueMarker) {
    // The directory is parent_path_ (possibly the root).
    BERTH_ASSIGN_OR_RETURN(int dir_fd, Parent(/*create=*/overlay));
    if (dir_fd < 0) {  // kDelete and the directory does not exist: nothing to hide.
      TraceEntry(entry, "skip", "opaque marker in a directory that does not exist");
      return Ok();
    }
    if (overlay) {
      TraceEntry(entry, "opaque", "trusted.overlay.opaque=y on the directory");
      std::string proc = ProcPath(dir_fd);
      // setxattr (not lsetxattr): follow the /proc magic link to the directory itself.
      if (setxattr(proc.c_str(), kOverlayOpaqueXattr, "y", 1, 0) != 0) {
        return Fail(EntryErrno(errno, "mark opaque directory", parent_path_));
      }
      return Ok();
    }
    TraceEntry(entry, "opaque", "delete the children lower layers gave the directory");
    BERTH_RETURN_IF_ERROR(RememberLowerDirectoryTimes(parent_path_, dir_fd));
    return ClearOpaque(dir_fd, parent_path_);
  }
  if (base_.starts_with(kWhiteoutMetaPrefix)) {
    TraceEntry(entry, "skip", "aufs whiteout metadata");
    return Ok();
  }
  std::string_view name = std::string_view(base_).substr(kWhiteoutPrefix.size());
  if (name.empty() || name == "." || name == "..") {
    return Fail(ErrorCode::kPermissionDenied,
                fmt::format("whiteout \"{}\" names \"{}\", which is not a removable entry; the "
                            "layer is refused",
                            entry.path, name));
  }
  std::string hidden =
      parent_path_.empty() ? std::string(name) : fmt::format("{}/{}", parent_path_, name);
  std::string hidden_name(name);
  if (overlay) {
    TraceEntry(entry, "whiteout", fmt::format("character device 0/0 hides \"{}\"", hidden));
    BERTH_ASSIGN_OR_RETURN(int parent_fd, Parent(/*create=*/true));
    if (mknodat(parent_fd, hidden_name.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
      if (errno != EEXIST) return Fail(EntryErrno(errno, "create whiteout for", hidden));
      BERTH_RETURN_IF_ERROR(RemoveExisting(parent_fd, hidden_name, hidden));
      if (mknodat(parent_fd, hidden_name.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
        return Fail(EntryErrno(errno, "create whiteout for", hidden));
      }
    }
    if (options_.preserve_ownership && (entry.uid != euid_ || entry.gid != egid_) &&
        fchownat(parent_fd, hidden_name.c_str(), entry.uid, entry.gid, AT_SYMLINK_NOFOLLOW) != 0) {
      return Fail(EntryErrno(errno, "chown whiteout for", hidden));
    }
    return Ok();
  }
  if (added_.contains(hidden)) {  // Whiteouts only hide lower layers' entries.
    TraceEntry(entry, "skip", fmt::format("whiteout of \"{}\", which this layer added", hidden));
    return Ok();
  }
  BERTH_ASSIGN_OR_RETURN(int parent_fd, Parent(/*create=*/false));
  if (parent_fd < 0) {
    TraceEntry(entry, "skip",
               fmt::format("whiteout of \"{}\", whose directory does not exist", hidden));
    return Ok();
  }
  TraceEntry(entry, "whiteout", fmt::format("delete \"{}\"", hidden));
  BERTH_RETURN_IF_ERROR(RememberLowerDirectoryTimes(parent_path_, parent_fd));
  parents_.Invalidate(hidden);
  return WithContext(RemoveAllAt(parent_fd, hidden_name.c_str()),
                     fmt::format("delete whited-out \"{}\"", hidden));
}

Result<void> TarApplier::ClearOpaque(int dir_fd, std::string_view dir_path) {
  UniqueFd fd(openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Fail(EntryErrno(errno, "open opaque directory", dir_path));
  DIR* dir = fdopendir(fd.get());
  if (dir == nullptr) return Fail(EntryErrno(errno, "list opaque directory", dir_path));
  fd.release();
  std::vector<std::string> doomed;
  std::string child_path;
  while (dirent* child = readdir(dir)) {
    std::string_view name = child->d_name;
    if (name == "." || name == "..") continue;
    child_path.assign(dir_path);
    if (!child_path.empty()) child_path.push_back('/');
    child_path.append(name);
    if (!added_.contains(child_path)) doomed.emplace_back(name);
  }
  Result<void> result = Ok();
  for (const std::string& name : doomed) {
    child_path.assign(dir_path);
    if (!child_path.empty()) child_path.push_back('/');
    child_path.append(name);
    parents_.Invalidate(child_path);
    result = RemoveAllAt(dirfd(dir), name.c_str());
    if (!result) break;
  }
  closedir(dir);
  return WithContext(std::move(result), fmt::format("clear opaque directory \"{}\"", dir_path));
}

Result<void> TarApplier::Finish() {
  if (finished_) return Ok();
  finished_ = true;
  file_.reset();
  parents_.Clear();
  // Directory times last: creating their children changed them. In archive order, so a
  // directory archived twice keeps its last entry's times, as its mode (containerd's order).
  for (const DirectoryTimes& directory : directory_times_) {
    timespec times[2] = {ToTimespec(directory.atime), ToTimespec(directory.mtime)};
    BERTH_RETURN_IF_ERROR(SetDirectoryTimes(directory.path, times));
  }
  directory_times_.clear();
  for (const auto& [path, times] : lower_directory_times_) {
    BERTH_RETURN_IF_ERROR(SetDirectoryTimes(path, times.data()));
  }
  lower_directory_times_.clear();
  BERTH_RETURN_IF_ERROR(FinishImplicitDirectories());
  if (options_.sync == SyncPolicy::kSyncfsAtEnd && syncfs(root_.get()) != 0) {
    return Fail(ErrnoError(errno, "syncfs layer root"));
  }
  return Ok();
}

Result<void> TarApplier::SetDirectoryTimes(const std::string& path, const timespec times[2]) {
  size_t slash = path.rfind('/');
  std::string parent = slash == std::string::npos ? std::string() : path.substr(0, slash);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  UniqueFd parent_fd(parent.empty()
                         ? fcntl(root_.get(), F_DUPFD_CLOEXEC, 3)
                         : OpenInRoot(root_.get(), parent.c_str(), O_PATH | O_DIRECTORY));
  if (!parent_fd) {
    if (errno == ENOENT || errno == ENOTDIR) return Ok();  // Removed by a later member.
    return Fail(EntryErrno(errno, "open directory", parent));
  }
  if (utimensat(parent_fd.get(), base.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0 &&
      errno != ENOENT) {
    return Fail(EntryErrno(errno, "set times on directory", path));
  }
  return Ok();
}

Result<void> TarApplier::RememberLowerDirectoryTimes(const std::string& path, int dir_fd) {
  if (path.empty() || added_.contains(path) || lower_directory_times_.contains(path)) return Ok();
  struct stat st;
  if (fstat(dir_fd, &st) != 0) return Fail(EntryErrno(errno, "stat directory", path));
  lower_directory_times_.emplace(path, std::array<timespec, 2>{st.st_atim, st.st_mtim});
  return Ok();
}

Result<void> TarApplier::FinishImplicitDirectories() {
  implicit_dirs_.clear();
  for (std::string& path : created_parents_) {
    if (implicit_.erase(path) == 0) continue;  // Defined by a later member, or listed already.
    UniqueFd dir(OpenInRoot(root_.get(), path.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW));
    if (!dir) {
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) continue;  // Replaced.
      return Fail(EntryErrno(errno, "open directory", path));
    }
    implicit_dirs_.push_back(std::move(path));
  }
  created_parents_.clear();
  implicit_.clear();
  // Parents first (a path is only listed once, so depth orders it).
  std::stable_sort(
      implicit_dirs_.begin(), implicit_dirs_.end(), [](const std::string& a, const std::string& b) {
        return std::count(a.begin(), a.end(), '/') < std::count(b.begin(), b.end(), '/');
      });
  std::vector<int> lower_fds;
  for (const UniqueFd& lower : lower_roots_) lower_fds.push_back(lower.get());
  const bool inherit = options_.whiteout_mode == WhiteoutMode::kOverlay && !lower_fds.empty();
  // Children first: a directory's newest child may be an implicit directory itself.
  for (auto it = implicit_dirs_.rbegin(); it != implicit_dirs_.rend(); ++it) {
    const std::string& path = *it;
    UniqueFd dir(OpenInRoot(root_.get(), path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
    if (!dir) return Fail(EntryErrno(errno, "open implicit directory", path));
    timespec newest{};
    BERTH_ASSIGN_OR_RETURN(bool has_child, NewestChildMtime(dir.get(), path, &newest));
    if (has_child) {
      timespec times[2] = {newest, newest};
      if (futimens(dir.get(), times) != 0) {
        return Fail(EntryErrno(errno, "set times on implicit directory", path));
      }
    }
    if (inherit) {
      BERTH_ASSIGN_OR_RETURN(bool inherited, InheritLowerDirectory(root_.get(), path, lower_fds,
                                                                   options_.preserve_ownership));
      if (trace_) {
        log::Trace(
            "archive.implicit_dir",
            {{"path", path},
             {"action", inherited ? "inherit-lower" : "keep (no lower directory shows it)"}});
      }
    }
  }
  return Ok();
}

}  // namespace berth::archive
