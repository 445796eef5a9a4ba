#include "berth/gc/collector.h"

#include <fmt/format.h>

#include <map>
#include <set>
#include <unordered_set>

#include "berth/base/log.h"
#include "berth/image/manifest.h"

namespace berth::gc {
namespace {

// What marking found reachable.
struct Marks {
  std::unordered_set<Digest> blobs;
  std::set<std::string, std::less<>> snapshots;
  std::vector<std::string> warnings;
};

class Marker {
 public:
  // `committed`: the names of committed snapshots, consulted when `discard_unpacked_layers`.
  Marker(content::Store& store, Marks& marks, const std::set<std::string, std::less<>>& committed,
         bool discard_unpacked_layers)
      : store_(store),
        marks_(marks),
        committed_(committed),
        discard_unpacked_layers_(discard_unpacked_layers) {}

  // Marks the blob `digest` and, when it is an index, manifest or config, what it refers to.
  // `media_type` may be empty (the document's own mediaType then decides).
  void MarkDocument(const Digest& digest, std::string_view media_type, int depth = 0) {
    if (!marks_.blobs.insert(digest).second) return;
    if (depth > 8) return;  // indexes nested absurdly deep: keep, look no further
    Result<std::string> bytes = store_.ReadBlob(digest, image::kMaxManifestBytes);
    if (!bytes) {
      if (bytes.error().code() != ErrorCode::kNotFound) Warn(digest, bytes.error());
      return;  // a missing blob marks nothing more; the image is reported broken elsewhere
    }
    Result<image::ManifestKind> kind = image::DetectKind(media_type, *bytes);
    if (!kind) return Warn(digest, kind.error());
    if (image::IsIndex(*kind)) {
      Result<image::Index> index = image::ParseIndex(*bytes);
      if (!index) return Warn(digest, index.error());
      for (const image::Descriptor& child : index->manifests) {
        // Only children that were pulled are in the store; the rest mark nothing.
        MarkDocument(child.digest, child.media_type, depth + 1);
      }
      return;
    }
    Result<image::Manifest> manifest = image::ParseManifest(*bytes);
    if (!manifest) return Warn(digest, manifest.error());
    const Digest& config_digest = manifest->config.digest;
    marks_.blobs.insert(config_digest);
    auto keep_all_layers = [&] {
      for (const image::Descriptor& layer : manifest->layers) marks_.blobs.insert(layer.digest);
    };
    Result<std::string> config_bytes = store_.ReadBlob(config_digest, image::kMaxManifestBytes);
    if (!config_bytes) {
      if (config_bytes.error().code() != ErrorCode::kNotFound) {
        Warn(config_digest, config_bytes.error());
      }
      return keep_all_layers();
    }
    Result<image::ImageConfig> config = image::ParseImageConfig(*config_bytes);
    if (!config) {
      Warn(config_digest, config.error());
      return keep_all_layers();
    }
    std::vector<Digest> chain_ids = image::ChainIds(config->diff_ids);
    for (const Digest& chain_id : chain_ids) marks_.snapshots.insert(chain_id.ToString());
    for (size_t i = 0; i < manifest->layers.size(); ++i) {
      const bool unpacked = i < chain_ids.size() && committed_.contains(chain_ids[i].ToString());
      if (!discard_unpacked_layers_ || !unpacked) marks_.blobs.insert(manifest->layers[i].digest);
    }
  }

 private:
  void Warn(const Digest& digest, const Error& error) {
    marks_.warnings.push_back(
        fmt::format("blob {} kept unread: {}", digest.ToString(), error.ToString()));
  }

  content::Store& store_;
  Marks& marks_;
  const std::set<std::string, std::less<>>& committed_;
  const bool discard_unpacked_layers_;
};

}  // namespace

// Mark, then sweep snapshots, blobs, ingests and orphaned directories, each phase under its
// comment. TODO(issue 13): one function per phase (they share the marks, the report and the
// warnings); kept whole this session to land the merge of containerd's roots first.
// NOLINTNEXTLINE(readability-function-size)
Result<CollectReport> Collect(content::Store& store, snapshot::Snapshotter& snapshotter,
                              snapshot::Cleaner& cleaner, metadata::MetadataDb& db,
                              const CollectOptions& options) {
  CollectReport report;
  if (!options.dry_run) {
    BERTH_ASSIGN_OR_RETURN(report.expired_leases, db.DeleteExpiredLeases(options.now));
  }

  // Mark.
  std::map<std::string, snapshot::Info, std::less<>> snapshots;
  std::set<std::string, std::less<>> committed;
  BERTH_RETURN_IF_ERROR(snapshotter.Walk([&](const snapshot::Info& info) -> Result<void> {
    snapshots.emplace(info.name, info);
    if (info.kind == snapshot::Kind::kCommitted) committed.insert(info.name);
    return Ok();
  }));
  Marks marks;
  Marker marker(store, marks, committed, options.discard_unpacked_layers);
  BERTH_ASSIGN_OR_RETURN(std::vector<metadata::ImageRecord> images, db.ListImages());
  for (const metadata::ImageRecord& image : images) {
    marker.MarkDocument(image.target.digest, image.target.media_type);
    // The chain ID recorded with the name, should the config not say (e.g. it is missing).
    if (!image.chain_id.empty()) marks.snapshots.insert(image.chain_id);
  }
  BERTH_ASSIGN_OR_RETURN(std::vector<metadata::LeaseRecord> leases, db.ListLeases());
  for (const metadata::LeaseRecord& lease : leases) {
    if (lease.expires && *lease.expires <= options.now) continue;  // expired: swept above
    for (const metadata::LeaseResource& resource : lease.resources) {
      if (resource.kind == metadata::LeaseResourceKind::kBlob) {
        if (Result<Digest> digest = Digest::Parse(resource.key)) marks.blobs.insert(*digest);
      } else {
        marks.snapshots.insert(resource.key);
      }
    }
  }
  for (const auto& [name, info] : snapshots) {
    if (std::string_view(name).starts_with(snapshot::kContainerdKeyPrefix)) {
      marks.snapshots.insert(name);  // containerd's, of any kind: only containerd removes it
    } else if (info.kind != snapshot::Kind::kCommitted &&
               !std::string_view(name).starts_with(snapshot::kUnpackScratchPrefix)) {
      marks.snapshots.insert(name);  // a mount or a container: a root
    }
  }
  // Parents of marked snapshots are marked too.
  std::vector<std::string> pending(marks.snapshots.begin(), marks.snapshots.end());
  while (!pending.empty()) {
    std::string name = std::move(pending.back());
    pending.pop_back();
    auto found = snapshots.find(name);
    if (found == snapshots.end() || found->second.parent.empty()) continue;
    if (marks.snapshots.insert(found->second.parent).second)
      pending.push_back(found->second.parent);
  }
  report.warnings = std::move(marks.warnings);

  auto warn = [&](std::string what, const Error& error) {
    log::Warn("gc.remove", {{"what", what}, {"error", error.ToString()}});
    report.warnings.push_back(fmt::format("{}: {}", what, error.ToString()));
  };

  // Sweep snapshots: repeatedly remove unmarked leaves (children before parents).
  std::map<std::string, int, std::less<>> children;
  for (const auto& [name, info] : snapshots) {
    if (!info.parent.empty()) ++children[info.parent];
  }
  std::vector<std::string> leaves;
  for (const auto& [name, info] : snapshots) {
    if (!marks.snapshots.contains(name) && children[name] == 0) leaves.push_back(name);
  }
  while (!leaves.empty()) {
    std::string name = std::move(leaves.back());
    leaves.pop_back();
    const snapshot::Info& info = snapshots.at(name);
    Result<snapshot::Usage> usage = snapshotter.GetUsage(name);
    if (!options.dry_run) {
      if (Result<void> removed = snapshotter.Remove(name);
          !removed && removed.error().code() != ErrorCode::kNotFound) {
        warn(fmt::format("snapshot {}", name), removed.error());
        continue;  // its parent stays too
      }
    }
    ++report.snapshots.count;
    report.snapshots.bytes += usage ? usage->size : 0;
    report.removed.push_back(fmt::format("snapshot {} ({})", name, snapshot::KindName(info.kind)));
    if (!info.parent.empty() && --children[info.parent] == 0 &&
        !marks.snapshots.contains(info.parent) && snapshots.contains(info.parent)) {
      leaves.push_back(info.parent);
    }
  }

  // Sweep blobs.
  std::vector<content::BlobInfo> unmarked_blobs;
  BERTH_RETURN_IF_ERROR(store.Walk([&](const content::BlobInfo& blob) {
    if (!marks.blobs.contains(blob.digest)) unmarked_blobs.push_back(blob);
  }));
  for (const content::BlobInfo& blob : unmarked_blobs) {
    if (!options.dry_run) {
      if (Result<void> deleted = store.Delete(blob.digest);
          !deleted && deleted.error().code() != ErrorCode::kNotFound) {
        warn(fmt::format("blob {}", blob.digest.ToString()), deleted.error());
        continue;
      }
    }
    ++report.blobs.count;
    // Disk bytes (allocated blocks, as du counts them), measured by Walk before removal.
    report.blobs.bytes += blob.allocated_bytes;
    report.removed.push_back(fmt::format("blob {}", blob.digest.ToString()));
  }

  // Sweep ingests.
  BERTH_ASSIGN_OR_RETURN(std::vector<content::IngestInfo> ingests, store.ListIngests());
  for (const content::IngestInfo& ingest : ingests) {
    if (ingest.expected && marks.blobs.contains(*ingest.expected)) continue;
    if (!options.dry_run) {
      Result<void> aborted = store.RemoveIngest(ingest.id, options.exclusive);
      if (!aborted && aborted.error().code() == ErrorCode::kUnavailable) continue;  // in use
      if (!aborted && aborted.error().code() != ErrorCode::kNotFound) {
        warn(fmt::format("ingest {}", ingest.ref), aborted.error());
        continue;
      }
    }
    ++report.ingests.count;
    report.ingests.bytes += ingest.offset;
    report.removed.push_back(ingest.ref.empty() ? fmt::format("ingest {} (broken)", ingest.id)
                                                : fmt::format("ingest {}", ingest.ref));
  }

  // Directories no snapshot owns.
  BERTH_ASSIGN_OR_RETURN(std::vector<std::filesystem::path> orphans,
                         options.dry_run ? cleaner.FindOrphans() : cleaner.Cleanup());
  for (const std::filesystem::path& orphan : orphans) {
    ++report.orphan_directories.count;
    report.removed.push_back(fmt::format("directory {}", orphan.string()));
  }

  log::Info("gc.done", {{"dry_run", options.dry_run ? "true" : "false"},
                        {"blobs", std::to_string(report.blobs.count)},
                        {"snapshots", std::to_string(report.snapshots.count)},
                        {"ingests", std::to_string(report.ingests.count)},
                        {"directories", std::to_string(report.orphan_directories.count)},
                        {"bytes", std::to_string(report.total_bytes())}});
  return report;
}

}  // namespace berth::gc
