#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>

#include <fmt/format.h>

#include "berth/pull/puller.h"
#include "berth/registry/curl_transport.h"
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
  bool quiet = false;
};

// Draws progress on a terminal: a finished line per blob, and one live status line.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool enabled) : enabled_(enabled) {}

  void Update(const pull::BlobProgress& blob) {
    if (!enabled_) return;
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

  Result<std::unique_ptr<content::Store>> store = OpenContentStore(*config);
  if (!store) return PrintError(store.error());
  Result<std::unique_ptr<registry::CurlTransport>> transport = registry::CurlTransport::Create();
  if (!transport) return PrintError(transport.error());
  pull::Puller puller(**store, **transport, *config);

  ProgressPrinter printer(!flags.quiet && ::isatty(STDERR_FILENO));
  auto started = std::chrono::steady_clock::now();
  Result<pull::PulledImage> pulled = puller.Pull(
      flags.reference, options, [&](const pull::BlobProgress& blob) { printer.Update(blob); },
      CancelToken::Never());
  if (!pulled) return PrintError(pulled.error());
  if (!flags.quiet && ::isatty(STDERR_FILENO)) {
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::fprintf(stderr, "pulled %s: %s fetched in %.2f s\n", pulled->reference.ToString().c_str(),
                 HumanSize(pulled->bytes_fetched).c_str(), seconds);
  }
  std::cout << pulled->image_id.ToString() << "\n";
  return 0;
}

}  // namespace

void AddPullCommand(CLI::App& app, int* status) {
  auto flags = std::make_shared<PullFlags>();
  CLI::App* pull = app.add_subcommand("pull", "Pull an image and print its image ID");
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
  pull->add_flag("-q,--quiet", flags->quiet, "Print only the image ID");
  pull->callback([=] { *status = Pull(*flags); });
}

}  // namespace berth::cli
