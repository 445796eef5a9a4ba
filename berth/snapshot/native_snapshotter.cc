#include "berth/snapshot/native_snapshotter.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>

#include "berth/snapshot/tree_util.h"

namespace berth::snapshot {

namespace fs = std::filesystem;

Result<std::unique_ptr<NativeSnapshotter>> NativeSnapshotter::Open(
    const NativeSnapshotterOptions& options) {
  std::unique_ptr<NativeSnapshotter> snapshotter(new NativeSnapshotter(options));
  BERTH_RETURN_IF_ERROR(
      WithContext(snapshotter->Initialize(),
                  fmt::format("open native snapshotter at {}", options.root.string())));
  return snapshotter;
}

fs::path NativeSnapshotter::LayerDir(int64_t id) const { return SnapshotDir(id); }

Result<void> NativeSnapshotter::PopulateDirectory(const fs::path& directory,
                                                  const Snapshot& snapshot) {
  if (snapshot.parent_ids.empty()) {
    // mkdtemp made it 0700; an empty root filesystem starts out like any other directory.
    if (::chmod(directory.c_str(), 0755) != 0) {
      return Fail(ErrnoError(errno, fmt::format("chmod {}", directory.string())));
    }
    return Ok();
  }
  return WithContext(CopyTree(LayerDir(snapshot.parent_ids.front()), directory),
                     "copy parent snapshot");
}

Result<std::vector<Mount>> NativeSnapshotter::MountsFor(const Snapshot& snapshot) const {
  std::string access = snapshot.kind == Kind::kActive ? "rw" : "ro";
  return std::vector<Mount>{
      {.type = "bind", .source = LayerDir(snapshot.id).string(), .options = {"rbind", access}}};
}

ApplyTarget NativeSnapshotter::ApplyTargetFor(const Snapshot& snapshot) const {
  return ApplyTarget{.directory = LayerDir(snapshot.id), .whiteouts = WhiteoutStyle::kDelete};
}

}  // namespace berth::snapshot
