#include "berth/service/disk_admission.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <iterator>

#include "berth/base/byte_size.h"
#include "berth/base/log.h"

namespace berth::service {
namespace {

// The check for one filesystem that must hold `blob_bytes` and `unpacked_bytes` of `estimate`
// (either part may be 0 when it goes to another filesystem). `holds` names berth's directories
// on it.
Result<void> CheckFilesystem(const SpaceEstimate& estimate, uint64_t blob_bytes,
                             uint64_t unpacked_bytes, const FilesystemSpace& filesystem,
                             std::string_view holds, const FreeSpaceReserve& reserve_setting) {
  const uint64_t needed = blob_bytes + unpacked_bytes;
  const uint64_t reserve = reserve_setting.For(filesystem.size);
  const uint64_t usable = filesystem.available > reserve ? filesystem.available - reserve : 0;
  if (needed <= usable) return Ok();
  return Fail(ErrorCode::kResourceExhausted,
              fmt::format("not enough disk space: the pull needs about {} on the filesystem "
                          "holding {} ({} of layer blobs to download, {} unpacked, estimated at "
                          "{:.1f}x the layers' compressed size), which has {} free of {}, {} of "
                          "it kept in reserve; free space there (berth rmi, berth gc) or move "
                          "berth's root to a larger filesystem, then pull again",
                          FormatByteSize(needed), holds, FormatByteSize(blob_bytes),
                          FormatByteSize(unpacked_bytes), estimate.ratio,
                          FormatByteSize(filesystem.available), FormatByteSize(filesystem.size),
                          FormatByteSize(reserve)));
}

}  // namespace

uint64_t FreeSpaceReserve::For(uint64_t filesystem_size) const {
  return std::max(
      bytes, static_cast<uint64_t>(std::ceil(static_cast<double>(filesystem_size) * fraction)));
}

double UnpackRatio(int64_t compressed, int64_t unpacked) {
  const double prior = static_cast<double>(kRatioPriorBytes);
  return (static_cast<double>(std::max<int64_t>(unpacked, 0)) + kDefaultUnpackRatio * prior) /
         (static_cast<double>(std::max<int64_t>(compressed, 0)) + prior);
}

SpaceEstimate EstimateSpace(std::span<const LayerState> layers, double ratio) {
  SpaceEstimate estimate{.ratio = ratio};
  double unpacked = 0;
  for (const LayerState& layer : layers) {
    if (layer.unpacked) continue;
    const int64_t size = std::max<int64_t>(layer.compressed_size, 0);
    unpacked += static_cast<double>(size) * ratio;
    if (!layer.blob_stored) {
      estimate.blob_bytes +=
          static_cast<uint64_t>(size - std::clamp<int64_t>(layer.ingested, 0, size));
    }
  }
  estimate.unpacked_bytes = static_cast<uint64_t>(std::ceil(unpacked));
  return estimate;
}

Result<FilesystemSpace> MeasureFilesystem(const std::filesystem::path& directory) {
  struct statvfs vfs {};
  if (::statvfs(directory.c_str(), &vfs) != 0) {
    return Fail(ErrnoError(errno, fmt::format("statvfs {}", directory.string())));
  }
  struct stat st {};
  if (::stat(directory.c_str(), &st) != 0) {
    return Fail(ErrnoError(errno, fmt::format("stat {}", directory.string())));
  }
  return FilesystemSpace{.path = directory,
                         .device = static_cast<uint64_t>(st.st_dev),
                         .available = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize,
                         .size = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize};
}

Result<void> CheckSpace(const SpaceEstimate& estimate,
                        const std::optional<FilesystemSpace>& content,
                        const std::optional<FilesystemSpace>& snapshots,
                        const FreeSpaceReserve& reserve) {
  if (content && snapshots && content->device == snapshots->device) {
    const std::string holds =
        content->path == snapshots->path
            ? content->path.string()
            : fmt::format("{} and {}", content->path.string(), snapshots->path.string());
    return CheckFilesystem(estimate, estimate.blob_bytes, estimate.unpacked_bytes, *content, holds,
                           reserve);
  }
  if (content) {
    BERTH_RETURN_IF_ERROR(CheckFilesystem(estimate, estimate.blob_bytes, 0, *content,
                                          content->path.string(), reserve));
  }
  if (snapshots) {
    BERTH_RETURN_IF_ERROR(CheckFilesystem(estimate, 0, estimate.unpacked_bytes, *snapshots,
                                          snapshots->path.string(), reserve));
  }
  return Ok();
}

Result<void> DiskAdmission::Admit(const image::Manifest& manifest, const image::ImageConfig& config,
                                  Admitted& admitted) {
  admitted = {};
  const std::vector<Digest> chain_ids = image::ChainIds(config.diff_ids);
  // What partial downloads already hold, by the digest they will have.
  std::vector<content::IngestInfo> ingests;
  if (Result<std::vector<content::IngestInfo>> listed = store_.ListIngests()) {
    ingests = std::move(*listed);
  }
  std::vector<LayerState> layers;
  for (size_t i = 0; i < manifest.layers.size() && i < chain_ids.size(); ++i) {
    const image::Descriptor& descriptor = manifest.layers[i];
    LayerState layer{.compressed_size = descriptor.size};
    Result<snapshot::Info> info = snapshotter_.Stat(chain_ids[i].ToString());
    layer.unpacked = info && info->kind == snapshot::Kind::kCommitted;
    if (!layer.unpacked) {
      admitted.compressed_sizes.push_back(descriptor.size);
      admitted.chain_ids.push_back(chain_ids[i].ToString());
    }
    layer.blob_stored = store_.Contains(descriptor.digest);
    for (const content::IngestInfo& ingest : ingests) {
      if (ingest.expected == descriptor.digest) {
        layer.ingested = std::max(layer.ingested, ingest.offset);
      }
    }
    layers.push_back(layer);
  }
  const SpaceEstimate estimate = EstimateSpace(layers, ratio());

  // A directory that cannot be measured is not checked: admission is a courtesy, and a full
  // disk still fails the pull cleanly.
  auto measure = [](const std::filesystem::path& directory) -> std::optional<FilesystemSpace> {
    if (directory.empty()) return std::nullopt;
    Result<FilesystemSpace> measured = MeasureFilesystem(directory);
    if (!measured) {
      log::Warn("pull.admission", {{"error", measured.error().ToString()}});
      return std::nullopt;
    }
    return *measured;
  };
  std::optional<FilesystemSpace> content = measure(store_.root());
  std::optional<FilesystemSpace> snapshots = measure(snapshot_root_);
  if (snapshot_root_.empty() && content) {
    snapshots = content;  // the same filesystem: one check of the sum
  }
  return CheckSpace(estimate, content, snapshots, reserve_);
}

void DiskAdmission::Learn(const Admitted& admitted) {
  int64_t compressed = 0;
  int64_t unpacked = 0;
  for (size_t i = 0; i < admitted.chain_ids.size(); ++i) {
    Result<snapshot::Usage> usage = snapshotter_.GetUsage(admitted.chain_ids[i]);
    if (!usage || admitted.compressed_sizes[i] <= 0) continue;
    compressed += admitted.compressed_sizes[i];
    unpacked += usage->size;
  }
  std::lock_guard lock(mutex_);
  observed_compressed_ += compressed;
  observed_unpacked_ += unpacked;
}

double DiskAdmission::ratio() const {
  std::lock_guard lock(mutex_);
  return UnpackRatio(observed_compressed_, observed_unpacked_);
}

}  // namespace berth::service
