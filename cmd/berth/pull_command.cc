// berth pull REF: through berthd (CRI PullImage) when it answers, else in this process through
// the image service (pull, unpack, names recorded in <root>/metadata.db). Prints the image ID.
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>

#include "cmd/berth/backend.h"
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
  bool progress = false;  // progress lines even when stderr is not a terminal
};

// Prints a line per fetched blob (size, rate) and per unpacked layer on a terminal: in embedded
// mode from the pull's callbacks (called from the pull's threads), in daemon mode from berthd's
// Admin.PullProgress updates (called from the watching thread).
class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool enabled) : enabled_(enabled) {}

  void Fetched(const pull::BlobProgress& blob) {
    if (!enabled_) return;
    std::lock_guard lock(mutex_);
    auto now = std::chrono::steady_clock::now();
    std::string id = blob.digest.encoded().substr(0, 12);
    auto [started, inserted] = started_.emplace(id, now);
    if (!blob.complete) return;
    if (blob.cached) {
      std::fprintf(stderr, "blob   %s  %s  already present\n", id.c_str(),
                   HumanSize(blob.total).c_str());
      return;
    }
    double seconds = std::chrono::duration<double>(now - started->second).count();
    std::string rate =
        seconds > 0
            ? HumanSize(static_cast<int64_t>(static_cast<double>(blob.total) / seconds)) + "/s"
            : "-";
    std::fprintf(stderr, "blob   %s  %s  fetched at %s\n", id.c_str(),
                 HumanSize(blob.total).c_str(), rate.c_str());
  }

  void Unpacked(const unpack::LayerProgress& layer) {
    if (!enabled_ || layer.event == unpack::LayerEvent::kCommitted) return;
    std::lock_guard lock(mutex_);
    std::string id = layer.chain_id.encoded().substr(0, 12);
    if (layer.event == unpack::LayerEvent::kAlreadyPresent) {
      std::fprintf(stderr, "layer %zu  %s  already unpacked\n", layer.index + 1, id.c_str());
    } else {
      std::fprintf(stderr, "layer %zu  %s  unpacked %s\n", layer.index + 1, id.c_str(),
                   HumanSize(static_cast<int64_t>(layer.uncompressed_bytes)).c_str());
    }
  }

  // Daemon mode: berthd's view of the pull. Lines per blob as it passes each quarter of its
  // size ("<done>/<total> bytes"), once it is fetched or found present, and per layer once it
  // is unpacked (numbered in manifest order, named by its blob digest).
  void Update(const std::vector<service::PullStatus>& pulls) {
    if (!enabled_) return;
    std::lock_guard lock(mutex_);
    auto now = std::chrono::steady_clock::now();
    for (const service::PullStatus& pull : pulls) {
      size_t layer_number = 0;
      for (const service::BlobStatus& blob : pull.blobs) {
        if (blob.layer) ++layer_number;
        std::string id = blob.digest.substr(blob.digest.find(':') + 1, 12);
        auto [started, inserted] = started_.emplace(id, now);
        BlobLines& lines = lines_[blob.digest];
        if (blob.state == service::BlobState::kCached) {
          if (!lines.fetched) {
            std::fprintf(stderr, "blob   %s  %s  already present\n", id.c_str(),
                         HumanSize(blob.total_bytes).c_str());
          }
          if (blob.layer && !lines.unpacked) {
            std::fprintf(stderr, "layer %zu  %s  already unpacked\n", layer_number, id.c_str());
          }
          lines.fetched = lines.unpacked = true;
          continue;
        }
        if (blob.total_bytes > 0 && !lines.fetched) {
          int quarter = static_cast<int>(blob.fetched_bytes * 4 / blob.total_bytes);
          if (quarter > lines.quarter) {
            lines.quarter = quarter;
            std::fprintf(stderr, "blob   %s  %lld/%lld bytes\n", id.c_str(),
                         static_cast<long long>(blob.fetched_bytes),
                         static_cast<long long>(blob.total_bytes));
          }
        }
        bool fetched = blob.state == service::BlobState::kUnpacking ||
                       blob.state == service::BlobState::kCommitted;
        if (fetched && !lines.fetched) {
          lines.fetched = true;
          double seconds = std::chrono::duration<double>(now - started->second).count();
          std::string rate = seconds > 0 ? HumanSize(static_cast<int64_t>(
                                               static_cast<double>(blob.total_bytes) / seconds)) +
                                               "/s"
                                         : "-";
          std::fprintf(stderr, "blob   %s  %s  fetched at %s\n", id.c_str(),
                       HumanSize(blob.total_bytes).c_str(), rate.c_str());
        }
        if (blob.layer && blob.state == service::BlobState::kCommitted && !lines.unpacked) {
          lines.unpacked = true;
          std::fprintf(stderr, "layer %zu  %s  unpacked %s\n", layer_number, id.c_str(),
                       HumanSize(static_cast<int64_t>(blob.unpacked_bytes)).c_str());
        }
      }
      if (pull.state == service::PullState::kFailed && !failure_shown_) {
        failure_shown_ = true;
        std::fprintf(stderr, "berthd: pull failed: %s\n", pull.error.c_str());
      }
    }
  }

 private:
  struct BlobLines {
    int quarter = 0;
    bool fetched = false;
    bool unpacked = false;
  };

  bool enabled_;
  std::mutex mutex_;
  std::map<std::string, std::chrono::steady_clock::time_point> started_;
  std::map<std::string, BlobLines> lines_;
  bool failure_shown_ = false;
};

Result<service::PullRequest> ToRequest(const PullFlags& flags) {
  service::PullRequest request{.image = flags.reference};
  if (!flags.platform.empty()) {
    BERTH_ASSIGN_OR_RETURN(request.platform, image::ParsePlatform(flags.platform));
  }
  if (!flags.user.empty()) {
    size_t colon = flags.user.find(':');
    request.auth.username = flags.user.substr(0, colon);
    if (colon != std::string::npos) request.auth.password = Secret(flags.user.substr(colon + 1));
  }
  request.auth.auth = Secret(flags.auth);
  request.auth.identity_token = Secret(flags.identity_token);
  request.auth.registry_token = Secret(flags.registry_token);
  return request;
}

int Pull(const PullFlags& flags) {
  Result<service::PullRequest> request = ToRequest(flags);
  if (!request) return PrintError(request.error());
  const bool show_progress = !flags.quiet && (flags.progress || ::isatty(STDERR_FILENO));
  ProgressPrinter printer(show_progress);
  request->progress = [&](const pull::BlobProgress& blob) { printer.Fetched(blob); };
  BackendOptions options{
      .layer_progress = [&](const unpack::LayerProgress& layer) { printer.Unpacked(layer); },
      .pull_progress = show_progress
                           ? PullProgressFn([&](const std::vector<service::PullStatus>& pulls) {
                               printer.Update(pulls);
                             })
                           : PullProgressFn()};
  if (flags.snapshotter == "native") options.snapshotter = config::SnapshotterKind::kNative;
  if (flags.snapshotter == "overlayfs") options.snapshotter = config::SnapshotterKind::kOverlayfs;
  Result<std::unique_ptr<ImageBackend>> backend = OpenBackend(std::move(options));
  if (!backend) return PrintError(backend.error());
  if (request->platform && !(*backend)->embedded()) {
    return PrintError(Error(ErrorCode::kInvalidArgument,
                            fmt::format("--platform needs embedded mode: CRI cannot ask {} for a "
                                        "platform (it pulls its own)",
                                        (*backend)->Describe())));
  }
  if (show_progress)
    std::fprintf(stderr, "pulling %s via %s\n", flags.reference.c_str(),
                 (*backend)->Describe().c_str());

  auto started = std::chrono::steady_clock::now();
  Result<service::PullResult> pulled = (*backend)->Pull(*request);
  if (!pulled) return PrintError(pulled.error());
  if (show_progress) {
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::fprintf(stderr, "pulled %s in %.2f s\n", pulled->reference.c_str(), seconds);
  }
  std::cout << pulled->image_id.ToString() << "\n";
  return 0;
}

}  // namespace

void AddPullCommand(CLI::App& app, int* status) {
  auto flags = std::make_shared<PullFlags>();
  CLI::App* pull = app.add_subcommand(
      "pull",
      "Pull an image and unpack it into snapshots (through berthd when it answers); print "
      "its image ID");
  pull->add_option("REF", flags->reference, "Image reference, e.g. busybox:1.36")->required();
  pull->add_option("--platform", flags->platform,
                   "os/arch[/variant] (default: this host's; embedded mode only)");
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
                   "overlayfs or native (default: the config's pull.snapshotter; embedded mode "
                   "only)")
      ->check(CLI::IsMember({"overlayfs", "native"}));
  pull->add_flag("-q,--quiet", flags->quiet, "Print only the image ID");
  pull->add_flag("--progress", flags->progress,
                 "Print progress lines even when stderr is not a terminal");
  pull->callback([=] { *status = Pull(*flags); });
}

}  // namespace berth::cli
