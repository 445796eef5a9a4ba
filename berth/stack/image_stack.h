// File: berth/stack/image_stack.h
//
// ImageStack is service::ImageService with everything under it, built from a config the one way
// that both berthd and the berth CLI's embedded mode use:
//
//   content::Store           <root>/content (fsync per the config's pull.sync)
//   snapshot::Snapshotter    <root>/snapshots/<pull.snapshotter> (overlayfs, native or erofs)
//   metadata::MetadataDb     <root>/metadata.db
//   registry::CurlTransport → pull::Puller, with the node's one pull::DownloadScheduler
//   peers::Membership        from config.peers when a peer is configured (a static list or a
//                            DNS name, refreshed at Open and then by its own thread): the peers
//                            the puller asks for blobs before the registry
//   service::ImageService    unpacking with berth/unpack's Unpacker; pinned per pull.pinned_images
//                            (every pull's Unpacker shares the stack's unpack::LayerThreadBudget,
//                            the process's one count of layers being applied)
//
// The stack owns these and destroys them in reverse order. It does not take the root's lock:
// callers take a RootLock (root_lock.h) first, since two processes must not work on one root.
//
// Thread safety: images() may be used from any thread (ImageService is thread-safe); the stack
// itself is immutable after Open().
#pragma once

#include <filesystem>
#include <memory>

#include "berth/base/result.h"
#include "berth/config/config.h"
#include "berth/content/store.h"
#include "berth/metadata/metadata_db.h"
#include "berth/peers/membership.h"
#include "berth/pull/puller.h"
#include "berth/registry/curl_transport.h"
#include "berth/service/image_service.h"
#include "berth/snapshot/local_snapshotter.h"
#include "berth/snapshot/snapshotter.h"
#include "berth/unpack/unpacker.h"

namespace berth::stack {

struct ImageStackOptions {
  // Called from the pull's threads for each layer of every pull (the CLI's progress); may be
  // empty. Must outlive the stack.
  unpack::LayerProgressFn layer_progress;
  // Run start-up reconciliation (ImageService::Recover) once the service is built. Only for the
  // process that holds the root's lock.
  bool recover = true;
  // Hear the registry client's and transport's requests, and the image service's pulls, layers
  // and collections (berthd's metrics); may be null. Must outlive the stack.
  registry::RegistryObserver* registry_observer = nullptr;
  service::ImageServiceObserver* service_observer = nullptr;
};

class ImageStack {
 public:
  // Opens (creating what is missing) everything under `config.root` (made absolute) and builds
  // the image service, whose index is loaded from the database, then runs ImageService::Recover
  // when options.recover. Blocks on disk I/O. Errors: those of each component's Open/Create, and
  // Recover's.
  static Result<std::unique_ptr<ImageStack>> Open(const config::Config& config,
                                                  ImageStackOptions options = {});

  ImageStack(const ImageStack&) = delete;
  ImageStack& operator=(const ImageStack&) = delete;
  ~ImageStack();

  service::ImageService& images() { return *images_; }
  content::Store& store() { return *store_; }
  snapshot::Snapshotter& snapshotter() { return *snapshotter_; }
  // The maintenance side of snapshotter() (the same object).
  snapshot::Cleaner& snapshot_cleaner() { return *snapshotter_; }
  metadata::MetadataDb& metadata() { return *db_; }
  // What the peer endpoint follows for a blob the store lacks: the puller's downloads, and the
  // fetches it starts for peers (pull/puller.h).
  peers::ArrivingBlobs& arriving_blobs() { return *puller_; }
  // The snapshotter's directory, <root>/snapshots/<name>.
  const std::filesystem::path& snapshot_root() const { return snapshot_root_; }
  // What start-up reconciliation freed (empty when options.recover was false).
  const gc::CollectReport& recovered() const { return recovered_; }

 private:
  ImageStack() = default;

  // Declaration order is dependency order; members are destroyed in reverse.
  ImageStackOptions options_;
  std::filesystem::path snapshot_root_;
  std::unique_ptr<content::Store> store_;
  std::unique_ptr<snapshot::LocalSnapshotter> snapshotter_;  // a Snapshotter and its Cleaner
  std::unique_ptr<metadata::MetadataDb> db_;
  std::unique_ptr<registry::CurlTransport> transport_;
  std::unique_ptr<pull::DownloadScheduler> scheduler_;
  std::unique_ptr<peers::Membership> membership_;  // null without peers
  std::unique_ptr<pull::Puller> puller_;
  unpack::LayerThreadBudget layer_threads_;
  std::unique_ptr<service::ImageService> images_;
  gc::CollectReport recovered_;
};

// The snapshotter `kind` under <root>/snapshots/<name>, with its metadata in <root>/metadata.db
// and syncfs at commit unless the config's pull.sync is "none". For tools that need a
// snapshotter without the image service (berth mount).
Result<std::unique_ptr<snapshot::Snapshotter>> OpenSnapshotter(const config::Config& config,
                                                               config::SnapshotterKind kind);

}  // namespace berth::stack
