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

// The snapshotter's snapshots by name, and the names of the committed ones.
struct SnapshotTable {
  std::map<std::string, snapshot::Info, std::less<>> by_name;
  std::set<std::string, std::less<>> committed;
};

// Deletes the leases whose expiry has passed and returns how many; a dry run deletes none.
Result<int64_t> DeleteExpiredLeases(metadata::MetadataDb& db, const CollectOptions& options) {
  if (options.dry_run) return 0;
  return WithContext(db.DeleteExpiredLeases(options.now),
                     "garbage collection: delete expired leases");
}

Result<SnapshotTable> ReadSnapshots(snapshot::Snapshotter& snapshotter) {
  SnapshotTable snapshots;
  Result<void> walked = snapshotter.Walk([&](const snapshot::Info& info) -> Result<void> {
    snapshots.by_name.emplace(info.name, info);
    if (info.kind == snapshot::Kind::kCommitted) snapshots.committed.insert(info.name);
    return Ok();
  });
  BERTH_RETURN_IF_ERROR(WithContext(std::move(walked), "garbage collection: walk snapshots"));
  return snapshots;
}

// Marks what each image record keeps: its target and the documents below it, and the chain ID
// recorded with the name.
Result<void> MarkImages(content::Store& store, metadata::MetadataDb& db,
                        const SnapshotTable& snapshots, bool discard_unpacked_layers,
                        Marks& marks) {
  Marker marker(store, marks, snapshots.committed, discard_unpacked_layers);
  BERTH_ASSIGN_OR_RETURN(std::vector<metadata::ImageRecord> images,
                         WithContext(db.ListImages(), "garbage collection: read image records"));
  for (const metadata::ImageRecord& image : images) {
    marker.MarkDocument(image.target.digest, image.target.media_type);
    // The chain ID recorded with the name, should the config not say (e.g. it is missing).
    if (!image.chain_id.empty()) marks.snapshots.insert(image.chain_id);
  }
  return Ok();
}

// Marks the blobs and snapshots the leases that have not expired hold. An expired lease keeps
// nothing, even in a dry run that did not delete it.
Result<void> MarkLeases(metadata::MetadataDb& db, std::chrono::system_clock::time_point now,
                        Marks& marks) {
  BERTH_ASSIGN_OR_RETURN(std::vector<metadata::LeaseRecord> leases,
                         WithContext(db.ListLeases(), "garbage collection: read leases"));
  for (const metadata::LeaseRecord& lease : leases) {
    if (lease.expires && *lease.expires <= now) continue;
    for (const metadata::LeaseResource& resource : lease.resources) {
      if (resource.kind == metadata::LeaseResourceKind::kBlob) {
        if (Result<Digest> digest = Digest::Parse(resource.key)) marks.blobs.insert(*digest);
      } else {
        marks.snapshots.insert(resource.key);
      }
    }
  }
  return Ok();
}

// Marks the snapshots that are roots by themselves: containerd's, and mounts and containers.
void MarkSnapshotRoots(const SnapshotTable& snapshots, Marks& marks) {
  for (const auto& [name, info] : snapshots.by_name) {
    if (std::string_view(name).starts_with(snapshot::kContainerdKeyPrefix)) {
      marks.snapshots.insert(name);  // containerd's, of any kind: only containerd removes it
    } else if (info.kind != snapshot::Kind::kCommitted &&
               !std::string_view(name).starts_with(snapshot::kUnpackScratchPrefix)) {
      marks.snapshots.insert(name);  // a mount or a container: a root
    }
  }
}

// Marks the parents of the marked snapshots, and theirs.
void MarkParents(const SnapshotTable& snapshots, Marks& marks) {
  std::vector<std::string> pending(marks.snapshots.begin(), marks.snapshots.end());
  while (!pending.empty()) {
    std::string name = std::move(pending.back());
    pending.pop_back();
    auto found = snapshots.by_name.find(name);
    if (found == snapshots.by_name.end() || found->second.parent.empty()) continue;
    if (marks.snapshots.insert(found->second.parent).second)
      pending.push_back(found->second.parent);
  }
}

// Everything the roots (collector.h) keep.
Result<Marks> Mark(content::Store& store, metadata::MetadataDb& db, const SnapshotTable& snapshots,
                   const CollectOptions& options) {
  Marks marks;
  BERTH_RETURN_IF_ERROR(MarkImages(store, db, snapshots, options.discard_unpacked_layers, marks));
  BERTH_RETURN_IF_ERROR(MarkLeases(db, options.now, marks));
  MarkSnapshotRoots(snapshots, marks);
  MarkParents(snapshots, marks);
  return marks;
}

// Logs a removal that failed and lists it in the report's warnings; the thing stays, and the
// next collection retries it.
void WarnRemoveFailed(CollectReport& report, const std::string& what, const Error& error) {
  log::Warn("gc.remove", {{"what", what}, {"error", error.ToString()}});
  report.warnings.push_back(fmt::format("{}: {}", what, error.ToString()));
}

// Removes the snapshots nothing marked, leaves first (children before parents). A snapshot
// whose removal fails stays, and so do its ancestors.
void SweepSnapshots(snapshot::Snapshotter& snapshotter, const SnapshotTable& snapshots,
                    const Marks& marks, const CollectOptions& options, CollectReport& report) {
  std::map<std::string, int, std::less<>> children;
  for (const auto& [name, info] : snapshots.by_name) {
    if (!info.parent.empty()) ++children[info.parent];
  }
  std::vector<std::string> leaves;
  for (const auto& [name, info] : snapshots.by_name) {
    if (!marks.snapshots.contains(name) && children[name] == 0) leaves.push_back(name);
  }
  while (!leaves.empty()) {
    std::string name = std::move(leaves.back());
    leaves.pop_back();
    const snapshot::Info& info = snapshots.by_name.at(name);
    Result<snapshot::Usage> usage = snapshotter.GetUsage(name);
    if (!options.dry_run) {
      if (Result<void> removed = snapshotter.Remove(name);
          !removed && removed.error().code() != ErrorCode::kNotFound) {
        WarnRemoveFailed(report, fmt::format("snapshot {}", name), removed.error());
        continue;  // its parent stays too
      }
    }
    ++report.snapshots.count;
    report.snapshots.bytes += usage ? usage->size : 0;
    report.removed.push_back(fmt::format("snapshot {} ({})", name, snapshot::KindName(info.kind)));
    if (!info.parent.empty() && --children[info.parent] == 0 &&
        !marks.snapshots.contains(info.parent) && snapshots.by_name.contains(info.parent)) {
      leaves.push_back(info.parent);
    }
  }
}

// Deletes the blobs nothing marked.
Result<void> SweepBlobs(content::Store& store, const Marks& marks, const CollectOptions& options,
                        CollectReport& report) {
  std::vector<content::BlobInfo> unmarked_blobs;
  Result<void> walked = store.Walk([&](const content::BlobInfo& blob) {
    if (!marks.blobs.contains(blob.digest)) unmarked_blobs.push_back(blob);
  });
  BERTH_RETURN_IF_ERROR(WithContext(std::move(walked), "garbage collection: walk blobs"));
  for (const content::BlobInfo& blob : unmarked_blobs) {
    if (!options.dry_run) {
      if (Result<void> deleted = store.Delete(blob.digest);
          !deleted && deleted.error().code() != ErrorCode::kNotFound) {
        WarnRemoveFailed(report, fmt::format("blob {}", blob.digest.ToString()), deleted.error());
        continue;
      }
    }
    ++report.blobs.count;
    // Disk bytes (allocated blocks, as du counts them), measured by Walk before removal.
    report.blobs.bytes += blob.allocated_bytes;
    report.removed.push_back(fmt::format("blob {}", blob.digest.ToString()));
  }
  return Ok();
}

// Removes the ingests whose expected digest nothing marked; one a writer holds is in use and
// skipped.
Result<void> SweepIngests(content::Store& store, const Marks& marks, const CollectOptions& options,
                          CollectReport& report) {
  BERTH_ASSIGN_OR_RETURN(std::vector<content::IngestInfo> ingests,
                         WithContext(store.ListIngests(), "garbage collection: list ingests"));
  for (const content::IngestInfo& ingest : ingests) {
    if (ingest.expected && marks.blobs.contains(*ingest.expected)) continue;
    if (!options.dry_run) {
      Result<void> aborted = store.RemoveIngest(ingest.id, options.exclusive);
      if (!aborted && aborted.error().code() == ErrorCode::kUnavailable) continue;  // in use
      if (!aborted && aborted.error().code() != ErrorCode::kNotFound) {
        WarnRemoveFailed(report, fmt::format("ingest {}", ingest.ref), aborted.error());
        continue;
      }
    }
    ++report.ingests.count;
    report.ingests.bytes += ingest.offset;
    report.removed.push_back(ingest.ref.empty() ? fmt::format("ingest {} (broken)", ingest.id)
                                                : fmt::format("ingest {}", ingest.ref));
  }
  return Ok();
}

// Deletes the directories under the snapshotter's root that no snapshot owns (a dry run only
// finds them).
Result<void> SweepOrphanDirectories(snapshot::Cleaner& cleaner, const CollectOptions& options,
                                    CollectReport& report) {
  BERTH_ASSIGN_OR_RETURN(
      std::vector<std::filesystem::path> orphans,
      options.dry_run
          ? WithContext(cleaner.FindOrphans(), "garbage collection: find orphan directories")
          : WithContext(cleaner.Cleanup(), "garbage collection: delete orphan directories"));
  for (const std::filesystem::path& orphan : orphans) {
    ++report.orphan_directories.count;
    report.removed.push_back(fmt::format("directory {}", orphan.string()));
  }
  return Ok();
}

void LogReport(const CollectReport& report, const CollectOptions& options) {
  log::Info("gc.done", {{"dry_run", options.dry_run ? "true" : "false"},
                        {"blobs", std::to_string(report.blobs.count)},
                        {"snapshots", std::to_string(report.snapshots.count)},
                        {"ingests", std::to_string(report.ingests.count)},
                        {"directories", std::to_string(report.orphan_directories.count)},
                        {"bytes", std::to_string(report.total_bytes())}});
}

}  // namespace

Result<CollectReport> Collect(content::Store& store, snapshot::Snapshotter& snapshotter,
                              snapshot::Cleaner& cleaner, metadata::MetadataDb& db,
                              const CollectOptions& options) {
  CollectReport report;
  BERTH_ASSIGN_OR_RETURN(report.expired_leases, DeleteExpiredLeases(db, options));
  BERTH_ASSIGN_OR_RETURN(const SnapshotTable snapshots, ReadSnapshots(snapshotter));
  BERTH_ASSIGN_OR_RETURN(Marks marks, Mark(store, db, snapshots, options));
  report.warnings = std::move(marks.warnings);
  SweepSnapshots(snapshotter, snapshots, marks, options, report);
  BERTH_RETURN_IF_ERROR(SweepBlobs(store, marks, options, report));
  BERTH_RETURN_IF_ERROR(SweepIngests(store, marks, options, report));
  BERTH_RETURN_IF_ERROR(SweepOrphanDirectories(cleaner, options, report));
  LogReport(report, options);
  return report;
}

}  // namespace berth::gc
