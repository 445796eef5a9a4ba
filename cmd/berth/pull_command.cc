#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>

#include "berth/pull/puller.h"
#include "berth/registry/curl_transport.h"
#include "berth/unpack/unpacker.h"
#include "cmd/berth/commands.h"
#include "cmd/berth/common.h"

namespace berth::cli {
namespace {

struct PullFlags {
  std::string reference;
  std::string platform;
  std::string user;  // USER:PASS
  std::string auth;
  std::string identity_token;
  std::string registry_token;
  std::string snapshotter;  // empty: the config's pull.snapshotter
  bool quiet = false;
};

// Draws progress on a terminal: a finished line per blob and per unpacked layer, and one live
// status line. Called from the pull's download threads.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool enabled) : enabled_(enabled) {}

  void Unpacked(const unpack::LayerProgress& layer) {
    if (!enabled_) return;
    std::lock_guard lock(mutex_);
    std::string id = layer.chain_id.encoded().substr(0, 12);
    switch (layer.event) {
      case unpack::LayerEvent::kAlreadyPresent:
        std::fprintf(stderr, "\r\x1b[Klayer %zu  %s  already unpacked\n", layer.index + 1,
                     id.c_str());
        break;
      case unpack::LayerEvent::kApplied:
        std::fprintf(stderr, "\r\x1b[Klayer %zu  %s  unpacked %s\n", layer.index + 1, id.c_str(),
                     HumanSize(static_cast<int64_t>(layer.uncompressed_bytes)).c_str());
        break;
      case unpack::LayerEvent::kCommitted:
        break;
    }
  }

  void Update(const pull::BlobProgress& blob) {
    if (!enabled_) return;
    std::lock_guard lock(mutex_);
    auto now = std::chrono::steady_clock::now();
    auto& state = blobs_[blob.digest.ToString()];
    if (state.started == std::chrono::steady_clock::time_point()) state.started = now;
    state.progress = blob;
    std::string id = blob.digest.encoded().substr(0, 12);
    if (blob.complete) {
      double seconds = std::chrono::duration<double>(now - state.started).count();
      std::string rate = blob.cached || seconds <= 0
                             ? "already present"
                             : fmt::format("{}/s", HumanSize(static_cast<int64_t>(
                                                       static_cast<double>(blob.total) / seconds)));
      std::fprintf(stderr, "\r\x1b[K%s  %10s  %s\n", id.c_str(), HumanSize(blob.total).c_str(),
                   rate.c_str());
      blobs_.erase(blob.digest.ToString());
      return;
    }
    std::string line;
    for (const auto& [digest, active] : blobs_) {
      line += fmt::format("{} {}/{}  ", digest.substr(7, 12), HumanSize(active.progress.done),
                          HumanSize(active.progress.total));
    }
    std::fprintf(stderr, "\r\x1b[K%s", line.substr(0, 160).c_str());
  }

 private:
  struct State {
    std::chrono::steady_clock::time_point started;
    pull::BlobProgress progress;
  };
  bool enabled_;
  std::mutex mutex_;
  std::map<std::string, State> blobs_;
};

int Pull(const PullFlags& flags) {
  Result<config::Config> config = LoadConfig();
  if (!config) return PrintError(config.error());
  pull::PullOptions options;
  if (!flags.platform.empty()) {
    Result<image::Platform> platform = image::ParsePlatform(flags.platform);
    if (!platform) return PrintError(platform.error());
    options.platform = *platform;
  }
  if (!flags.user.empty()) {
    size_t colon = flags.user.find(':');
    options.auth.username = flags.user.substr(0, colon);
    if (colon != std::string::npos) options.auth.password = Secret(flags.user.substr(colon + 1));
  }
  options.auth.auth = Secret(flags.auth);
  options.auth.identity_token = Secret(flags.identity_token);
  options.auth.registry_token = Secret(flags.registry_token);

  config::SnapshotterKind kind = config->pull.snapshotter;
  if (flags.snapshotter == "native") kind = config::SnapshotterKind::kNative;
  if (flags.snapshotter == "overlayfs") kind = config::SnapshotterKind::kOverlayfs;

  Result<std::unique_ptr<content::Store>> store = OpenContentStore(*config);
  if (!store) return PrintError(store.error());
  Result<std::unique_ptr<snapshot::Snapshotter>> snapshotter = OpenSnapshotter(*config, kind);
  if (!snapshotter) return PrintError(snapshotter.error());
  Result<std::unique_ptr<metadata::MetadataDb>> db = OpenMetadata(*config);
  if (!db) return PrintError(db.error());
  Result<std::unique_ptr<registry::CurlTransport>> transport = registry::CurlTransport::Create();
  if (!transport) return PrintError(transport.error());
  pull::Puller puller(**store, **transport, *config);

  ProgressPrinter printer(!flags.quiet && ::isatty(STDERR_FILENO));
  // Durability (config pull.sync): "layer" lets the snapshotter syncfs each layer at commit
  // (OpenSnapshotter), "file" also fsyncs every file as it is written, "none" syncs nothing.
  unpack::UnpackOptions unpack_options{.sync = config->pull.sync == config::SyncMode::kFile
                                                   ? archive::SyncPolicy::kFsyncEachFile
                                                   : archive::SyncPolicy::kNone,
                                       .max_layer_size = config->pull.max_layer_size};
  unpack::Unpacker unpacker(**snapshotter, **store, unpack_options,
                            [&](const unpack::LayerProgress& layer) { printer.Unpacked(layer); });
  options.layer_handler = &unpacker;
  auto started = std::chrono::steady_clock::now();
  Result<pull::PulledImage> pulled = puller.Pull(
      flags.reference, options, [&](const pull::BlobProgress& blob) { printer.Update(blob); },
      CancelToken::Never());
  if (!pulled) return PrintError(pulled.error());

  // The image's names, as the image service records them: the image ID, the tag, the digest.
  metadata::ImageRecord base{
      .target = {.media_type = pulled->target.media_type,
                 .digest = pulled->target.digest,
                 .size = pulled->target.size},
      .image_id = pulled->image_id,
      .chain_id = unpacker.chain_id().ToString(),
      .snapshotter = std::string(config::SnapshotterName(kind)),
      .labels = {{std::string(metadata::kManagedLabel), std::string(metadata::kManagedValue)}}};
  std::vector<metadata::ImageRecord> records(1, base);
  records.back().name = pulled->image_id.ToString();
  if (pulled->reference.has_tag()) {
    records.push_back(base);
    records.back().name = pulled->reference.ToString();
  }
  records.push_back(base);
  records.back().name = pulled->reference.NameOnly().WithDigest(pulled->target.digest).ToString();
  if (Result<void> recorded = (*db)->PutImages(records); !recorded) {
    return PrintError(recorded.error());
  }

  if (!flags.quiet && ::isatty(STDERR_FILENO)) {
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    unpack::UnpackStats stats = unpacker.stats();
    std::fprintf(stderr,
                 "pulled %s: %s fetched, %zu of %zu layers unpacked (%s) into %s in %.2f s\n",
                 pulled->reference.ToString().c_str(), HumanSize(pulled->bytes_fetched).c_str(),
                 stats.streamed + stats.applied_from_store, stats.layers,
                 HumanSize(static_cast<int64_t>(stats.uncompressed_bytes)).c_str(),
                 std::string(config::SnapshotterName(kind)).c_str(), seconds);
  }
  std::cout << pulled->image_id.ToString() << "\n";
  return 0;
}

}  // namespace

void AddPullCommand(CLI::App& app, int* status) {
  auto flags = std::make_shared<PullFlags>();
  CLI::App* pull =
      app.add_subcommand("pull", "Pull an image, unpack it into snapshots and print its image ID");
  pull->add_option("REF", flags->reference, "Image reference, e.g. busybox:1.36")->required();
  pull->add_option("--platform", flags->platform, "os/arch[/variant] (default: this host's)");
  auto* user = pull->add_option("--user", flags->user, "Registry credentials USER:PASS");
  auto* auth = pull->add_option("--auth", flags->auth, "base64 of USER:PASS");
  auto* identity = pull->add_option("--identity-token", flags->identity_token,
                                    "OAuth2 refresh token for the registry's token service");
  auto* token = pull->add_option("--registry-token", flags->registry_token,
                                 "Bearer token sent to the registry as is");
  user->excludes(auth)->excludes(identity)->excludes(token);
  auth->excludes(identity)->excludes(token);
  identity->excludes(token);
  pull->add_option("--snapshotter", flags->snapshotter,
                   "overlayfs or native (default: the config's pull.snapshotter)")
      ->check(CLI::IsMember({"overlayfs", "native"}));
  pull->add_flag("-q,--quiet", flags->quiet, "Print only the image ID");
  pull->callback([=] { *status = Pull(*flags); });
}

}  // namespace berth::cli
