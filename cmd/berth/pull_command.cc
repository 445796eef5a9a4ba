// berth pull REF: through berthd (CRI PullImage) when it answers, else in this process through
// the image service (pull, unpack, names recorded in <root>/metadata.db). Prints the image ID.
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>

#include "cmd/berth/backend.h"
#include "cmd/berth/commands.h"
#include "cmd/berth/common.h"
#include "cmd/berth/pull_progress.h"

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
  bool progress = false;  // plain progress lines even on a terminal
  bool json = false;      // progress events and the result as JSON lines on stdout
};

// The view of the pull's progress (pull_progress.h): JSON events with --json, nothing with -q,
// live lines on a terminal unless --progress asks for plain ones, plain lines elsewhere.
std::unique_ptr<ProgressView> ChooseView(const PullFlags& flags) {
  if (flags.json) return MakeJsonView(std::cout);
  if (flags.quiet) return nullptr;
  if (!flags.progress && ::isatty(STDERR_FILENO)) return MakeLiveView(stderr, STDERR_FILENO);
  return MakeLineView(stderr);
}

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
  std::unique_ptr<ProgressView> view = ChooseView(flags);
  BackendOptions options;
  if (view) {
    options.pull_progress = [&](const std::vector<service::PullStatus>& pulls) {
      view->Update(pulls);
    };
  }
  for (config::SnapshotterKind kind : config::kSnapshotterKinds) {
    if (flags.snapshotter == config::SnapshotterName(kind)) options.snapshotter = kind;
  }
  Result<std::unique_ptr<ImageBackend>> backend = OpenBackend(std::move(options));
  if (!backend) return PrintError(backend.error());
  if (request->platform && !(*backend)->embedded()) {
    return PrintError(Error(ErrorCode::kInvalidArgument,
                            fmt::format("--platform needs embedded mode: CRI cannot ask {} for a "
                                        "platform (it pulls its own)",
                                        (*backend)->Describe())));
  }
  if (view && !flags.json) {
    std::fprintf(stderr, "pulling %s via %s\n", flags.reference.c_str(),
                 (*backend)->Describe().c_str());
  }
  const auto started = std::chrono::steady_clock::now();
  Result<service::PullResult> pulled = (*backend)->Pull(*request);
  if (view) {
    view->Finish(pulled,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  if (!pulled) return PrintError(pulled.error());
  if (!flags.json) std::cout << pulled->image_id.ToString() << "\n";
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
                   "overlayfs, native or erofs (default: the config's pull.snapshotter; "
                   "embedded mode only)")
      ->check(CLI::IsMember({"overlayfs", "native", "erofs"}));
  auto* quiet = pull->add_flag("-q,--quiet", flags->quiet, "Print only the image ID");
  pull->add_flag("--progress", flags->progress,
                 "Plain progress lines on stderr even on a terminal (elsewhere they are the "
                 "default)");
  pull->add_flag("--json", flags->json,
                 "Print progress events and the result as JSON, one object per line")
      ->excludes(quiet);
  pull->callback([=] { *status = Pull(*flags); });
}

}  // namespace berth::cli
