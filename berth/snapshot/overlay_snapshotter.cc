#include "berth/snapshot/overlay_snapshotter.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "berth/base/file_util.h"

namespace berth::snapshot {
namespace {

namespace fs = std::filesystem;

}  // namespace

bool OverlaySnapshotter::KernelSupportsOverlay() {
  auto filesystems = ReadFile("/proc/filesystems");
  return filesystems && filesystems->find("\toverlay\n") != std::string::npos;
}

OverlaySnapshotter::OverlaySnapshotter(const OverlaySnapshotterOptions& options)
    : LocalSnapshotter("overlayfs", options), userxattr_(::geteuid() != 0) {}

Result<std::unique_ptr<OverlaySnapshotter>> OverlaySnapshotter::Open(
    const OverlaySnapshotterOptions& options) {
  if (!KernelSupportsOverlay()) {
    return Fail(ErrorCode::kFailedPrecondition,
                "the kernel has no overlay filesystem (not in /proc/filesystems); run "
                "`modprobe overlay` or use the native snapshotter");
  }
  std::unique_ptr<OverlaySnapshotter> snapshotter(new OverlaySnapshotter(options));
  BERTH_RETURN_IF_ERROR(
      WithContext(snapshotter->Initialize(),
                  fmt::format("open overlay snapshotter at {}", options.root.string())));
  return snapshotter;
}

fs::path OverlaySnapshotter::LayerDir(int64_t id) const { return SnapshotDir(id) / "fs"; }

Result<void> OverlaySnapshotter::PopulateDirectory(const fs::path& directory,
                                                   const Snapshot& snapshot) {
  BERTH_RETURN_IF_ERROR(MakeOverlayDirectories(directory, snapshot.kind));
  return InheritRootAttributes(directory / "fs", snapshot);
}

Result<void> OverlaySnapshotter::InheritRootAttributes(const fs::path& layer,
                                                       const Snapshot& snapshot) const {
  if (snapshot.parent_ids.empty()) return Ok();
  // overlayfs takes the root directory's attributes from the upper layer; start it out like
  // the parent's root so an applied layer that omits "./" does not change them.
  fs::path parent_layer = LayerDir(snapshot.parent_ids.front());
  struct stat st;
  if (::stat(parent_layer.c_str(), &st) != 0) {
    return Fail(ErrnoError(errno, fmt::format("stat {}", parent_layer.string())));
  }
  if (::chown(layer.c_str(), st.st_uid, st.st_gid) != 0 ||
      ::chmod(layer.c_str(), st.st_mode & 07777) != 0) {
    return Fail(ErrnoError(errno, fmt::format("set owner and mode of {}", layer.string())));
  }
  return Ok();
}

Result<void> OverlaySnapshotter::Rebase(const Snapshot& snapshot) {
  // The layer was written with no parent; its root must look as if it had been prepared on one.
  return InheritRootAttributes(LayerDir(snapshot.id), snapshot);
}

Result<std::vector<Mount>> OverlaySnapshotter::MountsFor(const Snapshot& snapshot) const {
  std::vector<std::string> extra_options;
  if (userxattr_) extra_options.emplace_back("userxattr");
  return OverlayStackMounts(
      snapshot, [this](int64_t id) { return LayerDir(id); }, std::move(extra_options));
}

ApplyTarget OverlaySnapshotter::ApplyTargetFor(const Snapshot& snapshot) const {
  ApplyTarget target{
      .directory = LayerDir(snapshot.id),
      .whiteouts = WhiteoutStyle::kOverlay,
      .opaque_xattr = userxattr_ ? "user.overlay.opaque" : "trusted.overlay.opaque",
  };
  for (int64_t parent_id : snapshot.parent_ids) target.lower_dirs.push_back(LayerDir(parent_id));
  return target;
}

}  // namespace berth::snapshot
