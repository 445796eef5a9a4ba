#include "berth/snapshot/erofs_snapshotter.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <set>

#include "berth/base/file_util.h"
#include "berth/base/log.h"
#include "berth/base/unique_fd.h"
#include "berth/erofs/directory_walker.h"
#include "berth/erofs/image_header.h"
#include "berth/erofs/image_writer.h"
#include "berth/snapshot/tree_util.h"

namespace berth::snapshot {
namespace {

namespace fs = std::filesystem;

constexpr const char* kImageName = "layer.erofs";
constexpr const char* kTempImageName = "layer.erofs.tmp";
// LOOP_CTL_GET_FREE may hand the same device to two racing callers; the loser retries.
constexpr int kLoopAttempts = 8;

bool IsMountPoint(const fs::path& path) {
  struct stat st, parent;
  if (::stat(path.c_str(), &st) != 0 || ::stat(path.parent_path().c_str(), &parent) != 0) {
    return false;
  }
  return st.st_dev != parent.st_dev;
}

bool IsEmptyDirectory(const fs::path& path) {
  std::error_code error;
  return fs::is_empty(path, error) && !error;
}

// Attaches `image` read-only to a free loop device and mounts that on `target`. The device is
// autoclear: it detaches itself when the mount goes (or at once, if the mount fails).
Result<void> MountThroughLoopDevice(const fs::path& image, const fs::path& target) {
  UniqueFd file(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file) return Fail(ErrnoError(errno, fmt::format("open {}", image.string())));
  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control) return Fail(ErrnoError(errno, "open /dev/loop-control"));
  for (int attempt = 0; attempt < kLoopAttempts; ++attempt) {
    const int number = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (number < 0) return Fail(ErrnoError(errno, "find a free loop device"));
    const std::string device = fmt::format("/dev/loop{}", number);
    UniqueFd loop(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
    if (!loop) return Fail(ErrnoError(errno, fmt::format("open {}", device)));
    struct loop_config config = {};
    config.fd = static_cast<uint32_t>(file.get());
    config.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    if (::ioctl(loop.get(), LOOP_CONFIGURE, &config) != 0) {
      if (errno == EBUSY) continue;
      return Fail(ErrnoError(errno, fmt::format("attach {} to {}", image.string(), device)));
    }
    if (::mount(device.c_str(), target.c_str(), "erofs", MS_RDONLY, nullptr) != 0) {
      return Fail(ErrnoError(
          errno, fmt::format("mount {} ({}) on {}", device, image.string(), target.string())));
    }
    return Ok();
  }
  return Fail(ErrorCode::kUnavailable,
              fmt::format("no free loop device for {} after {} attempts; retry", image.string(),
                          kLoopAttempts));
}

}  // namespace

bool ErofsSnapshotter::KernelSupportsErofs() {
  auto filesystems = ReadFile("/proc/filesystems");
  return filesystems && filesystems->find("\terofs\n") != std::string::npos &&
         filesystems->find("\toverlay\n") != std::string::npos;
}

ErofsSnapshotter::ErofsSnapshotter(const ErofsSnapshotterOptions& options)
    : LocalSnapshotter("erofs", options), layer_mounts_(options.layer_mounts) {}

ErofsSnapshotter::~ErofsSnapshotter() {
  std::lock_guard lock(users_mutex_);
  for (const auto& [id, count] : users_) UnmountLayer(id);
  users_.clear();
}

Result<std::unique_ptr<ErofsSnapshotter>> ErofsSnapshotter::Open(
    const ErofsSnapshotterOptions& options) {
  if (!KernelSupportsErofs()) {
    return Fail(ErrorCode::kFailedPrecondition,
                "the kernel lacks the erofs or overlay filesystem (not in /proc/filesystems); "
                "run `modprobe erofs overlay` or use the overlayfs snapshotter");
  }
  std::unique_ptr<ErofsSnapshotter> snapshotter(new ErofsSnapshotter(options));
  auto opened = [&]() -> Result<void> {
    BERTH_RETURN_IF_ERROR(snapshotter->Initialize());
    BERTH_RETURN_IF_ERROR(MakeDirectories(options.root / "mounts"));
    return snapshotter->Reconcile();
  }();
  BERTH_RETURN_IF_ERROR(WithContext(
      std::move(opened), fmt::format("open erofs snapshotter at {}", options.root.string())));
  return snapshotter;
}

fs::path ErofsSnapshotter::LayerDir(int64_t id) const { return SnapshotDir(id) / "fs"; }

fs::path ErofsSnapshotter::ImagePath(int64_t id) const { return SnapshotDir(id) / kImageName; }

fs::path ErofsSnapshotter::LayerMountPoint(int64_t id) const {
  return root() / "mounts" / std::to_string(id);
}

int ErofsSnapshotter::LayerMountUsersForTest(int64_t id) {
  std::lock_guard lock(users_mutex_);
  auto it = users_.find(id);
  return it == users_.end() ? 0 : it->second;
}

Result<void> ErofsSnapshotter::Reconcile() {
  BERTH_ASSIGN_OR_RETURN(std::vector<Snapshot> snapshots, ListMountedSnapshots());
  std::map<int64_t, int> needed;
  for (const Snapshot& snapshot : snapshots) {
    for (int64_t id : snapshot.parent_ids) ++needed[id];
  }
  const fs::path mounts = root() / "mounts";
  std::error_code error;
  for (fs::directory_iterator it(mounts, error), end; !error && it != end; it.increment(error)) {
    std::optional<int64_t> id = ParseSnapshotId(it->path().filename().string());
    if (id && needed.contains(*id)) continue;
    (void)::umount2(it->path().c_str(), MNT_DETACH);
    if (::rmdir(it->path().c_str()) != 0 && errno != ENOENT) {
      return Fail(
          ErrnoError(errno, fmt::format("remove stale layer mount point {}", it->path().string())));
    }
  }
  if (error) return Fail(ErrnoError(error.value(), fmt::format("list {}", mounts.string())));
  std::lock_guard lock(users_mutex_);
  for (const auto& [id, count] : needed) {
    // A layer that cannot be mounted (its image removed or damaged behind our back) must not
    // keep the snapshotter closed: the snapshots on it stay broken until `berth check --repair`
    // (or berthd's recovery) drops them, as FindMissing() reports them.
    if (Result<void> mounted = MountLayer(id); !mounted) {
      log::Warn("snapshot.layer_mount_failed",
                {{"layer", std::to_string(id)}, {"error", mounted.error().ToString()}});
      continue;
    }
    users_[id] = count;
  }
  return Ok();
}

Result<void> ErofsSnapshotter::MountLayer(int64_t id) {
  const fs::path target = LayerMountPoint(id);
  if (::mkdir(target.c_str(), 0755) != 0 && errno != EEXIST) {
    return Fail(ErrnoError(errno, fmt::format("create {}", target.string())));
  }
  if (IsMountPoint(target)) return Ok();  // left by an earlier process: reuse it
  const fs::path image = ImagePath(id);
  // A missing or truncated image would fail in the kernel with a bare errno; say what it is.
  if (Result<erofs::ImageHeader> header = erofs::ReadImageHeader(image); !header) {
    return Fail(std::move(header).error().WithContext(
        fmt::format("layer {} cannot be mounted; run `berth check --repair` and pull the image "
                    "again",
                    id)));
  }
  if (layer_mounts_ == LayerMountMethod::kAuto) {
    if (::mount(image.c_str(), target.c_str(), "erofs", MS_RDONLY, nullptr) == 0) return Ok();
    // ENOTBLK: this kernel mounts erofs from block devices only (before 6.12).
    if (errno != ENOTBLK) {
      return Fail(ErrnoError(
          errno, fmt::format("mount layer image {} on {}", image.string(), target.string())));
    }
  }
  return MountThroughLoopDevice(image, target);
}

void ErofsSnapshotter::UnmountLayer(int64_t id) {
  const fs::path target = LayerMountPoint(id);
  // Detached, not unmounted: overlays made from it (a container's rootfs) keep it alive, and a
  // mount point nothing uses any more must not block Remove.
  (void)::umount2(target.c_str(), MNT_DETACH);
  (void)::rmdir(target.c_str());
}

Result<void> ErofsSnapshotter::AcquireMounts(const Snapshot& snapshot) {
  std::lock_guard lock(users_mutex_);
  for (size_t i = 0; i < snapshot.parent_ids.size(); ++i) {
    const int64_t id = snapshot.parent_ids[i];
    if (users_[id] == 0) {
      if (auto mounted = MountLayer(id); !mounted) {
        users_.erase(id);
        for (size_t j = 0; j < i; ++j) {
          if (--users_[snapshot.parent_ids[j]] == 0) {
            users_.erase(snapshot.parent_ids[j]);
            UnmountLayer(snapshot.parent_ids[j]);
          }
        }
        return mounted;
      }
    }
    ++users_[id];
  }
  return Ok();
}

void ErofsSnapshotter::ReleaseMounts(const Snapshot& snapshot) {
  std::lock_guard lock(users_mutex_);
  for (int64_t id : snapshot.parent_ids) {
    auto it = users_.find(id);
    if (it == users_.end()) continue;
    if (--it->second == 0) {
      users_.erase(it);
      UnmountLayer(id);
    }
  }
}

Result<void> ErofsSnapshotter::PopulateDirectory(const fs::path& directory,
                                                 const Snapshot& snapshot) {
  return MakeOverlayDirectories(directory, snapshot.kind);
}

Result<std::vector<Mount>> ErofsSnapshotter::MountsFor(const Snapshot& snapshot) const {
  return OverlayStackMounts(snapshot, [this](int64_t id) { return LayerMountPoint(id); }, {});
}

ApplyTarget ErofsSnapshotter::ApplyTargetFor(const Snapshot& snapshot) const {
  ApplyTarget target{
      .directory = LayerDir(snapshot.id),
      .whiteouts = WhiteoutStyle::kOverlay,
      .opaque_xattr = "trusted.overlay.opaque",
      .layer_image = ImagePath(snapshot.id),
  };
  for (int64_t id : snapshot.parent_ids) target.lower_dirs.push_back(LayerMountPoint(id));
  return target;
}

Result<void> ErofsSnapshotter::SealLayer(const Snapshot& snapshot) {
  const fs::path upper = LayerDir(snapshot.id);
  const fs::path image = ImagePath(snapshot.id);
  std::error_code error;
  if (IsEmptyDirectory(upper) && fs::exists(image, error)) return Ok();  // the unpacker's image
  // The image is written aside and renamed, so layer.erofs is always a whole image.
  const fs::path temp = SnapshotDir(snapshot.id) / kTempImageName;
  erofs::ImageWriterOptions writer_options;
  writer_options.sync = options().sync == Durability::kNone ? erofs::ImageSync::kNone
                                                            : erofs::ImageSync::kFsyncAtFinish;
  auto converted = [&]() -> Result<void> {
    BERTH_ASSIGN_OR_RETURN(auto writer, erofs::ImageWriter::Create(temp, writer_options));
    BERTH_RETURN_IF_ERROR(erofs::WalkDirectory(upper, *writer));
    BERTH_RETURN_IF_ERROR(writer->Finish());
    if (::rename(temp.c_str(), image.c_str()) != 0) {
      return Fail(ErrnoError(errno, fmt::format("rename {} to {}", temp.string(), image.string())));
    }
    return Ok();
  }();
  if (!converted) {
    (void)::unlink(temp.c_str());
    return WithContext(std::move(converted), fmt::format("convert {} into the layer image {}",
                                                         upper.string(), image.string()));
  }
  return Ok();
}

void ErofsSnapshotter::AfterCommit(int64_t id) {
  // The layer is the image now; the upper tree and overlay's work directory are dead weight.
  // (Also run at Open: a crash may have come between the commit and this.)
  const fs::path upper = LayerDir(id);
  std::error_code error;
  if (!IsEmptyDirectory(upper) && fs::exists(ImagePath(id), error) && RemoveTree(upper)) {
    (void)::mkdir(upper.c_str(), 0755);
  }
  const fs::path work = SnapshotDir(id) / "work";
  if (fs::exists(work, error)) (void)RemoveTree(work);
}

bool ErofsSnapshotter::LayerIntact(int64_t id, Kind kind) const {
  if (kind != Kind::kCommitted) return LocalSnapshotter::LayerIntact(id, kind);
  return static_cast<bool>(erofs::ReadImageHeader(ImagePath(id)));
}

Result<Usage> ErofsSnapshotter::MeasureLayer(int64_t id) const {
  const fs::path image = ImagePath(id);
  Result<erofs::ImageHeader> header = erofs::ReadImageHeader(image);
  if (!header) {
    // An active snapshot the unpacker wrote no image into: its files are the layer.
    if (header.error().code() == ErrorCode::kNotFound) return DiskUsage(LayerDir(id));
    return Fail(std::move(header).error());
  }
  struct stat st;
  if (::stat(image.c_str(), &st) != 0) {
    return Fail(ErrnoError(errno, fmt::format("stat {}", image.string())));
  }
  return Usage{.size = static_cast<int64_t>(st.st_blocks) * 512,
               .inodes = static_cast<int64_t>(header->inodes)};
}

}  // namespace berth::snapshot
