#include "berth/snapshot/overlay_snapshotter.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "berth/base/file_util.h"

namespace berth::snapshot {
namespace {

namespace fs = std::filesystem;

// The option string the kernel will see, as MountOne() builds it (no flag options here).
size_t OptionLength(const std::vector<std::string>& options) {
  size_t length = 0;
  for (const std::string& option : options) length += option.size() + 1;
  return length == 0 ? 0 : length - 1;
}

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
  fs::path layer = directory / "fs";
  if (::mkdir(layer.c_str(), 0755) != 0) {
    return Fail(ErrnoError(errno, fmt::format("create {}", layer.string())));
  }
  if (snapshot.kind == Kind::kActive) {
    fs::path work = directory / "work";
    if (::mkdir(work.c_str(), 0711) != 0) {
      return Fail(ErrnoError(errno, fmt::format("create {}", work.string())));
    }
  }
  return InheritRootAttributes(layer, snapshot);
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
  const std::string layer = LayerDir(snapshot.id).string();
  if (snapshot.parent_ids.empty()) {
    std::string access = snapshot.kind == Kind::kActive ? "rw" : "ro";
    return std::vector<Mount>{{.type = "bind", .source = layer, .options = {"rbind", access}}};
  }
  if (snapshot.kind == Kind::kView && snapshot.parent_ids.size() == 1) {
    return std::vector<Mount>{{.type = "bind",
                               .source = LayerDir(snapshot.parent_ids.front()).string(),
                               .options = {"rbind", "ro"}}};
  }
  std::string lowerdir = "lowerdir=";
  for (size_t i = 0; i < snapshot.parent_ids.size(); ++i) {
    if (i > 0) lowerdir += ':';
    lowerdir += LayerDir(snapshot.parent_ids[i]).string();
  }
  std::vector<std::string> options{"index=off"};
  if (userxattr_) options.push_back("userxattr");
  if (snapshot.kind == Kind::kActive) {
    options.push_back("workdir=" + (SnapshotDir(snapshot.id) / "work").string());
    options.push_back("upperdir=" + layer);
  }
  options.push_back(std::move(lowerdir));
  const size_t length = OptionLength(options);
  const auto page_size = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  if (length + 1 > page_size) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("snapshot {} has {} parent layers; their overlay options need {} "
                            "bytes but the kernel takes at most {} (one page). Images this deep "
                            "are not supported yet (containerd has the same limit at about 128 "
                            "layers); use a shorter snapshotter root or flatten the image",
                            snapshot.key, snapshot.parent_ids.size(), length, page_size - 1));
  }
  return std::vector<Mount>{
      {.type = "overlay", .source = "overlay", .options = std::move(options)}};
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
