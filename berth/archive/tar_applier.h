// File: berth/archive/tar_applier.h
//
// TarApplier is the TarVisitor that materializes tar members beneath a root directory. It is
// the filesystem half of LayerApplier (layer_applier.h), usable on its own with a TarReader.
//
// Security model (the most important property of this module): no member can create, modify or
// delete anything outside the root, whatever the archive contains.
//   - Names are cleaned lexically: a leading '/' is stripped (absolute names are taken relative
//     to the root, as Docker and containerd do), "." and empty components are dropped, and any
//     ".." component is refused with kPermissionDenied, naming the entry.
//   - Every parent directory is resolved with openat2(2) and RESOLVE_IN_ROOT |
//     RESOLVE_NO_MAGICLINKS on a root dirfd, so symlinks met on the way (including ones an
//     earlier member created, absolute or full of "..") are resolved as if the root were "/"
//     and can never lead out. Then every operation is relative to that parent dirfd on the
//     final name only, never following a symlink in the final component (O_NOFOLLOW,
//     AT_SYMLINK_NOFOLLOW, O_EXCL creation; mkdirat/symlinkat/mknodat/linkat never follow).
//   - A parent that is a symlink whose target does not exist inside the root is refused, naming
//     the symlink and its target: kPermissionDenied when the target leads out of the root
//     (absolute, or above the root with ".."), kInvalidArgument otherwise.
//   - Existing non-directory entries are never opened for writing: a member replaces them
//     (unlink, then create with O_EXCL), so a symlink or a hardlink to a file elsewhere is never
//     written through. Symlinks may point anywhere; nothing is written through them.
//   - Hardlink targets are cleaned and resolved in the root the same way; linkat() does not
//     follow a symlink target, so a hardlink to a symlink links the symlink itself.
//   - Whiteout names ".", ".." or empty are refused; whiteouts never delete outside the root.
//   - xattrs named trusted.overlay.* in the archive are dropped: only the applier itself may
//     write overlayfs metadata (an archive must not forge an opaque directory or a redirect).
//
// Whiteouts (OCI image spec, layer.md):
//   kOverlay: ".wh.<name>" becomes a 0/0 character device <name> (owned like the whiteout
//             entry); ".wh..wh..opq" sets trusted.overlay.opaque=y on its directory (creating it
//             if needed) and deletes nothing. Hardlinks to files of lower layers (absent from the
//             upper dir) are satisfied by COPYING the file from the first of
//             TarApplierOptions::lower_dirs (topmost first) that has it: the copy is the lower
//             file in all but the inode — content with its holes (extents shared where the
//             filesystem can), mode, owner, every xattr (security.capability included) and
//             atime/mtime — but the link relation is not preserved. kFailedPrecondition when no
//             lower dir was given, or none has the target (or a layer above it whites it out);
//             kUnimplemented when the target there is not a regular file.
//   kDelete:  ".wh.<name>" deletes <name> recursively unless this layer created it (whiteouts
//             only hide lower layers); ".wh..wh..opq" deletes every child of the directory that
//             existed before this layer (children this layer added are kept).
//   Other ".wh..wh.*" names (aufs metadata) are ignored.
//
// Metadata: uid/gid (lchown family; skipped when a new entry already has them), then mode
// (after chown, since chown clears setuid/setgid), then xattrs (after chown, which clears
// security.capability), then times (mtime, and atime when the archive has one, else mtime;
// nanoseconds kept). Directory times are set in Finish(), after their contents were written.
// xattrs: EOPNOTSUPP is ignored for user.* (filesystems may lack user xattrs; losing a user
// comment is harmless) but is an error for every other namespace, notably security.capability,
// whose loss would silently break binaries such as ping.
// An entry created in a directory with a default ACL gets the mode and ACLs the archive gives
// it: the ACLs the kernel copied from the directory are removed (unless the archive lists them)
// and the mode is always set, as umoci does.
//
// The root directory's own entry ("./") is skipped: the root belongs to the caller. Any other
// entry type naming the root is kInvalidArgument.
//
// Implicit directories: a member whose parent directories have no entry of their own in the
// layer (e.g. only "usr/bin/x", or a whiteout "etc/.wh.foo") makes the applier create them,
// 0755 and owned by the caller. On overlayfs such an upper directory's mode, owner, times and
// xattrs would hide the lower layer's, so the applier records them (implicit_dirs(); a later
// member naming the same path removes it from the list) and in Finish():
//   - gives each one the newest mtime of its children (whiteouts excluded), so the result does
//     not depend on when the layer was unpacked; then
//   - with lower_dirs (overlay): copies mode, owner and times from the nearest lower layer that
//     shows the path as a directory (InheritLowerDirectory), and its xattrs too (user.*,
//     trusted.*, security.*, POSIX ACLs: the merged view shows exactly what the lower directory
//     had, as after an overlayfs copy-up), except overlayfs's own (trusted.overlay.* and
//     user.overlay.*, e.g. an opaque marker, which would hide the lower layers' contents).
//     Without lower_dirs, the caller (the unpacker, once the layer's parents are known) does the
//     same with implicit_dirs().
//
// Lower directories under kDelete (the native snapshotter applies a layer onto a copy of its
// parent): a directory that exists before the layer and that the layer changes (an entry
// created in it, a whiteout or opaque marker deleting from it) without an entry of its own keeps
// its times from before the layer: Finish() restores them, as umoci does, so the result does not
// depend on when the layer was unpacked. The root is left to the caller.
//
// Logging: at trace level (berth/base/log.h, checked once when the applier is made) one line per
// entry decision — "archive.entry path=… type=… action=create|link|copy-from-lower|whiteout|
// opaque|skip|drop-xattr detail=…" — and one per implicit directory created or inherited
// ("archive.implicit_dir"). Nothing is formatted at other levels.
//
// Thread safety: one thread at a time. Blocking: all methods do filesystem I/O.
#pragma once

#include <sys/stat.h>

#include <array>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "berth/archive/parent_dir_cache.h"
#include "berth/archive/tar_reader.h"
#include "berth/base/result.h"
#include "berth/base/unique_fd.h"

namespace berth::archive {

enum class WhiteoutMode {
  kOverlay,  // The root is an overlayfs upper dir: whiteouts become overlay metadata.
  kDelete,   // The root holds the lower layers' files too (native snapshots): delete.
};

enum class SyncPolicy {
  kNone,           // No sync; the caller decides (e.g. a syncfs of its own).
  kSyncfsAtEnd,    // syncfs(root) in Finish().
  kFsyncEachFile,  // fsync every regular file written from the archive before closing it
                   // (not lower-layer hardlink copies, not directories).
};

struct TarApplierOptions {
  WhiteoutMode whiteout_mode = WhiteoutMode::kOverlay;
  // Overlay only: the lower layers' directories, topmost first (see the header comment).
  std::vector<std::filesystem::path> lower_dirs;
  SyncPolicy sync = SyncPolicy::kNone;
  // Apply archived uid/gid. Without it, entries belong to the calling process's user.
  bool preserve_ownership = true;
};

struct TarApplierStats {
  uint64_t entries = 0;
  uint64_t file_bytes_written = 0;
};

class TarApplier final : public TarVisitor {
 public:
  // `root_fd` is a directory fd; it is duplicated, so the caller may close its own. kNotFound
  // if a lower dir is missing, kInvalidArgument if `root_fd` is not a directory.
  static Result<std::unique_ptr<TarApplier>> Create(int root_fd, TarApplierOptions options);
  ~TarApplier() override;

  Result<void> OnEntry(const TarEntry& entry) override;
  Result<void> OnData(uint64_t offset, std::string_view data) override;
  Result<void> OnEntryEnd() override;

  // Sets directory times and applies the sync policy. Call once, after the last member.
  Result<void> Finish();

  const TarApplierStats& stats() const { return stats_; }

  // The directories this layer created only as parents of other members, root-relative,
  // parents before children. Complete after Finish(); under kOverlay with lower_dirs they
  // already carry the lower layers' attributes.
  const std::vector<std::string>& implicit_dirs() const { return implicit_dirs_; }

 private:
  TarApplier(UniqueFd root, TarApplierOptions options);

  struct DirectoryTimes {
    std::string path;
    TarTime atime;
    TarTime mtime;
  };

  Result<void> Apply(const TarEntry& entry);
  // At trace level: one line for the decision `action` ("create", "skip", "whiteout", ...) about
  // `entry`, with `detail` when not empty. Nothing is formatted when trace is off.
  void TraceEntry(const TarEntry& entry, std::string_view action,
                  std::string_view detail = {}) const;
  Result<int> Parent(bool create);
  Result<void> CreateParents();
  Result<void> RemoveExisting(int parent_fd, const std::string& base, std::string_view path);
  Result<void> ApplyRegular(const TarEntry& entry, int parent_fd);
  Result<void> ApplyDirectory(const TarEntry& entry, int parent_fd);
  Result<void> ApplySymlink(const TarEntry& entry, int parent_fd);
  Result<void> ApplyHardlink(const TarEntry& entry, int parent_fd);
  Result<void> ApplyNode(const TarEntry& entry, int parent_fd);
  Result<void> ApplyWhiteout(const TarEntry& entry);
  Result<void> CopyFromLower(const TarEntry& entry, std::string_view target, int parent_fd);
  Result<void> ClearOpaque(int dir_fd, std::string_view dir_path);
  bool NeedsChown(const TarEntry& entry) const;
  bool NeedsChmod(const TarEntry& entry, bool is_directory) const;
  // Whether the current entry's parent directory has a default ACL (new entries inherit it).
  bool ParentHasDefaultAcl() const;
  Result<void> CloseFile(Result<void> status);
  Result<void> FinishImplicitDirectories();
  // kDelete: records the times of the lower directory `path` (open as `dir_fd`) before the layer
  // first changes it. Nothing for the root, a directory this layer made, or a second call.
  Result<void> RememberLowerDirectoryTimes(const std::string& path, int dir_fd);
  // Sets the times of the directory `path` beneath the root; Ok if a later member removed it.
  Result<void> SetDirectoryTimes(const std::string& path, const timespec times[2]);

  UniqueFd root_;
  TarApplierOptions options_;
  std::vector<UniqueFd> lower_roots_;
  TarApplierStats stats_;
  uid_t euid_;
  gid_t egid_;
  unsigned umask_;
  bool root_default_acl_ = false;
  // Trace logging was on when the applier was made (checked once, not per entry).
  bool trace_;

  // The member being applied: cleaned path and its split.
  std::string path_;
  std::string parent_path_;
  std::string base_;
  std::string scratch_;

  // The last parent directory opened (tar groups members by directory).
  ParentDirCache parents_;

  // The regular file being written.
  UniqueFd file_;
  const TarEntry* file_entry_ = nullptr;
  uint64_t file_offset_ = 0;

  std::vector<DirectoryTimes> directory_times_;
  // kDelete: paths this layer created, so whiteouts only hit lower layers.
  std::unordered_set<std::string> added_;
  // Directories created as parents (creation order, may repeat) and those still implicit.
  std::vector<std::string> created_parents_;
  std::unordered_set<std::string> implicit_;
  std::vector<std::string> implicit_dirs_;
  // kDelete: atime and mtime, before this layer, of lower directories it changes without an
  // entry of its own (see above); restored in Finish().
  std::unordered_map<std::string, std::array<timespec, 2>> lower_directory_times_;
  bool finished_ = false;
};

// Lower layer directories (topmost first), opened once (O_PATH) for FindLowerDirectory and
// InheritLowerDirectory.
class LowerLayers {
 public:
  // errno errors name the directory that cannot be opened.
  static Result<LowerLayers> Open(const std::vector<std::filesystem::path>& dirs);
  const std::vector<int>& fds() const { return fds_; }

 private:
  std::vector<UniqueFd> owned_;
  std::vector<int> fds_;
};

// What the merged overlay view shows at the directory `path` (root-relative) from
// `lower_root_fds` (layer directories, topmost first), for a layer above that has `path` only as
// an implicit directory: the first layer that has `path` decides. A directory there gives its
// stat and its xattrs, overlayfs's own (trusted.overlay.*, user.overlay.*) left out; nullopt when
// it is hidden instead (a whiteout or non-directory in that layer, an opaque ancestor in a layer
// above the one holding it) or no layer has it. The caller checks the layer's own ancestors.
struct LowerDirectory {
  struct stat st = {};
  std::vector<std::pair<std::string, std::string>> xattrs;
};
Result<std::optional<LowerDirectory>> FindLowerDirectory(const std::vector<int>& lower_root_fds,
                                                         std::string_view path);

// Makes the directory `path` (root-relative) beneath `root_fd` look like the one the merged
// overlay view would show from `lower_root_fds` (layer directories, topmost first): the first
// layer that has `path` decides. If it is a directory there, its mode, owner (when
// `preserve_ownership`), xattrs and atime/mtime are copied onto `path` and the result is true.
// xattrs are made identical — ones `path` has and the lower directory lacks (a default ACL mkdir
// inherited) are removed — except overlayfs's own (trusted.overlay.*, user.overlay.*), which are
// neither copied nor removed. Contents are not copied. If the path is hidden instead (a whiteout or
// non-directory in that layer, or an opaque or whited-out ancestor in the upper dir or a layer
// above the one holding it) or no layer has it, nothing changes and the result is false. kNotFound
// if `path` is not a directory beneath the root.
Result<bool> InheritLowerDirectory(int root_fd, std::string_view path,
                                   const std::vector<int>& lower_root_fds, bool preserve_ownership);

// InheritLowerDirectory for each of `dirs` beneath `root`, with lower layers given as paths
// (topmost first). Returns how many directories inherited attributes.
Result<size_t> InheritLowerDirectories(const std::filesystem::path& root,
                                       const std::vector<std::string>& dirs,
                                       const std::vector<std::filesystem::path>& lower_dirs,
                                       bool preserve_ownership);

// Cleans an archive member name into a root-relative path without "." or "..": strips leading
// '/', drops "." and empty components. kPermissionDenied for any ".." component. An empty
// result means the root itself. (Exposed for tests.)
Result<void> CleanArchivePath(std::string_view name, std::string& out);

}  // namespace berth::archive
