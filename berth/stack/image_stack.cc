#include "berth/stack/image_stack.h"

#include <charconv>
#include <string_view>

#include "berth/base/file_util.h"
#include "berth/base/log.h"
#include "berth/snapshot/erofs_snapshotter.h"
#include "berth/snapshot/native_snapshotter.h"
#include "berth/snapshot/overlay_snapshotter.h"

namespace berth::stack {
namespace {

namespace fs = std::filesystem;

fs::path SnapshotRoot(const fs::path& root, config::SnapshotterKind kind) {
  return root / "snapshots" / std::string(config::SnapshotterName(kind));
}

unpack::UnpackOptions::LayerThreads LayerThreadsFor(const config::PullConfig& pull) {
  switch (pull.layer_threads) {
    case config::LayerThreads::kOne:
      return unpack::UnpackOptions::LayerThreads::kOne;
    case config::LayerThreads::kTwo:
      return unpack::UnpackOptions::LayerThreads::kTwo;
    case config::LayerThreads::kThree:
      return unpack::UnpackOptions::LayerThreads::kThree;
    case config::LayerThreads::kAuto:
      break;
  }
  return unpack::UnpackOptions::LayerThreads::kAuto;
}

// The port of peers.listen ("0.0.0.0:5050" → 5050); 0 when it serves none or names no port.
uint16_t ListenPort(std::string_view listen) {
  const size_t colon = listen.rfind(':');
  unsigned port = 0;
  if (colon == std::string_view::npos) return 0;
  const std::string_view text = listen.substr(colon + 1);
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (error != std::errc() || end != text.data() + text.size() || port > 65535) return 0;
  return static_cast<uint16_t>(port);
}

// The peer membership of config.peers, or null when no peer is configured. Refreshed once here:
// a DNS failure at start is only a warning (the static peers, if any, still serve, and Run()'s
// thread tries again); an address that is not host:port is an error.
Result<std::unique_ptr<peers::Membership>> OpenMembership(const config::PeersConfig& config) {
  if (!config.enabled()) return nullptr;
  BERTH_ASSIGN_OR_RETURN(
      std::unique_ptr<peers::Membership> membership,
      WithContext(peers::Membership::Create({.static_peers = config.static_peers,
                                             .dns_name = config.dns_name,
                                             .port = config.port,
                                             .self = config.self,
                                             .own_port = ListenPort(config.listen),
                                             .refresh_interval = config.refresh_interval}),
                  "config [peers]"));
  if (Result<void> refreshed = membership->Refresh(); !refreshed) {
    log::Warn("peers.dns.failed", {{"name", config.dns_name},
                                   {"error", refreshed.error().ToString()},
                                   {"retry_in_ms", config.refresh_interval.count()}});
  }
  if (!config.dns_name.empty()) membership->Run();
  log::Info("peers.members", {{"count", membership->Current().size()},
                              {"self", membership->Self().empty() ? "unknown" : membership->Self()},
                              {"home_peers", config.home_peers},
                              {"tls", !config.tls_ca.empty()}});
  return membership;
}

// The snapshotter `kind` as its on-disk implementation: a Snapshotter and its Cleaner.
Result<std::unique_ptr<snapshot::LocalSnapshotter>> OpenLocalSnapshotter(
    const config::Config& config, config::SnapshotterKind kind) {
  const fs::path root = fs::absolute(config.root);
  BERTH_RETURN_IF_ERROR(MakeDirectories(root));
  snapshot::LocalSnapshotterOptions options{.root = SnapshotRoot(root, kind),
                                            .metadata_path = root / "metadata.db",
                                            .sync = config.pull.sync};
  if (kind == config::SnapshotterKind::kErofs) {
    snapshot::ErofsSnapshotterOptions erofs;
    static_cast<snapshot::LocalSnapshotterOptions&>(erofs) = options;
    BERTH_ASSIGN_OR_RETURN(auto opened, snapshot::ErofsSnapshotter::Open(erofs));
    return std::unique_ptr<snapshot::LocalSnapshotter>(std::move(opened));
  }
  if (kind == config::SnapshotterKind::kNative) {
    snapshot::NativeSnapshotterOptions native;
    static_cast<snapshot::LocalSnapshotterOptions&>(native) = options;
    BERTH_ASSIGN_OR_RETURN(auto opened, snapshot::NativeSnapshotter::Open(native));
    return std::unique_ptr<snapshot::LocalSnapshotter>(std::move(opened));
  }
  snapshot::OverlaySnapshotterOptions overlay;
  static_cast<snapshot::LocalSnapshotterOptions&>(overlay) = options;
  BERTH_ASSIGN_OR_RETURN(auto opened, snapshot::OverlaySnapshotter::Open(overlay));
  return std::unique_ptr<snapshot::LocalSnapshotter>(std::move(opened));
}

}  // namespace

Result<std::unique_ptr<snapshot::Snapshotter>> OpenSnapshotter(const config::Config& config,
                                                               config::SnapshotterKind kind) {
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<snapshot::LocalSnapshotter> opened,
                         OpenLocalSnapshotter(config, kind));
  return std::unique_ptr<snapshot::Snapshotter>(std::move(opened));
}

Result<std::unique_ptr<ImageStack>> ImageStack::Open(const config::Config& config,
                                                     ImageStackOptions options) {
  const fs::path root = fs::absolute(config.root);
  std::unique_ptr<ImageStack> stack(new ImageStack());
  stack->options_ = std::move(options);
  stack->snapshot_root_ = SnapshotRoot(root, config.pull.snapshotter);
  BERTH_ASSIGN_OR_RETURN(stack->store_, content::Store::Open({.root = root / "content",
                                                              .durability = config.pull.sync}));
  BERTH_ASSIGN_OR_RETURN(stack->snapshotter_,
                         OpenLocalSnapshotter(config, config.pull.snapshotter));
  BERTH_ASSIGN_OR_RETURN(stack->db_, metadata::MetadataDb::Open({.path = root / "metadata.db"}));
  BERTH_ASSIGN_OR_RETURN(stack->transport_,
                         registry::CurlTransport::Create(stack->options_.registry_observer));
  // One download scheduler for every pull of this node (its limits: pull.max_concurrent_*).
  stack->scheduler_ = std::make_unique<pull::DownloadScheduler>(
      pull::DownloadLimits{.max_total = config.pull.max_concurrent_downloads_total,
                           .max_per_registry = config.pull.max_concurrent_downloads_per_registry});
  BERTH_ASSIGN_OR_RETURN(stack->membership_, OpenMembership(config.peers));
  stack->puller_ = std::make_unique<pull::Puller>(
      *stack->store_, *stack->transport_, config, stack->scheduler_.get(),
      stack->options_.registry_observer, stack->membership_.get());
  // Durability (pull.sync): "layer" lets the snapshotter syncfs each layer at commit, "file"
  // also fsyncs every file as it is written, "none" syncs nothing.
  const unpack::UnpackOptions unpack_options{.sync = config.pull.sync == Durability::kFile
                                                         ? archive::SyncPolicy::kFsyncEachFile
                                                         : archive::SyncPolicy::kNone,
                                             .max_layer_size = config.pull.max_layer_size,
                                             .min_free_bytes = config.pull.min_free_space.bytes,
                                             .min_free_percent = config.pull.min_free_space.percent,
                                             .max_inflate_ratio = config.pull.max_inflate_ratio,
                                             .layer_threads = LayerThreadsFor(config.pull)};
  ImageStack* self = stack.get();
  BERTH_ASSIGN_OR_RETURN(
      stack->images_,
      service::ImageService::Create(
          *stack->puller_, *stack->store_, *stack->snapshotter_, *stack->snapshotter_, *stack->db_,
          {.snapshotter_name = std::string(config::SnapshotterName(config.pull.snapshotter)),
           .snapshot_root = stack->snapshot_root_,
           .pinned_images = config.pull.pinned_images,
           .unpacker =
               [self, unpack_options](pull::PullLease& lease, service::LayerUnpackFn on_layer,
                                      const unpack::UnpackDestination& destination) {
                 // Each layer event goes to the pull's board entry and to the stack's callback.
                 unpack::LayerProgressFn progress =
                     [self, on_layer = std::move(on_layer)](const unpack::LayerProgress& layer) {
                       on_layer(layer);
                       if (self->options_.layer_progress) self->options_.layer_progress(layer);
                     };
                 unpack::UnpackOptions this_pull = unpack_options;
                 this_pull.destination = destination;
                 return std::make_unique<unpack::Unpacker>(
                     *self->snapshotter_, *self->store_, self->layer_threads_, std::move(this_pull),
                     std::move(progress), &lease);
               },
           .resume_window = config.pull.resume_window,
           .discard_unpacked_layers = config.pull.discard_unpacked_layers,
           .min_free_space = {.bytes = config.pull.min_free_space.bytes,
                              .fraction = config.pull.min_free_space.percent / 100.0},
           .observer = stack->options_.service_observer}));
  if (stack->options_.recover) {
    BERTH_ASSIGN_OR_RETURN(gc::CollectReport recovered, stack->images_->Recover());
    stack->recovered_ = std::move(recovered);
  }
  return stack;
}

ImageStack::~ImageStack() = default;

}  // namespace berth::stack
