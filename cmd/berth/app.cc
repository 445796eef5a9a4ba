#include "cmd/berth/app.h"

#include <cstdio>

#include "berth/base/log.h"
#include "berth/stack/about.h"
#include "cmd/berth/commands.h"
#include "cmd/berth/common.h"

namespace berth::cli {

void BuildApp(CLI::App& app, int* status) {
  app.description(
      "berth: a container image service (OCI/Docker pull, content store, snapshots, CRI)");
  app.name("berth");
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand
  app.add_option("--config", Globals().config_file,
                 "Config file (default /etc/berth/config.toml if present)")
      ->type_name("FILE");
  app.add_option("--root", Globals().root,
                 "Root directory (default /var/lib/berth); given, it is used directly unless "
                 "the berthd holding it answers at the address")
      ->type_name("DIR");
  app.add_option("--address", Globals().address,
                 "berthd's CRI socket, unix:///PATH (default: the config's address, "
                 "unix:///run/berth/berth.sock)")
      ->type_name("ADDRESS");
  app.add_flag("-v,--verbose", Globals().verbosity,
               "Log what berth does to stderr: -v info, -vv debug (default: only warnings and "
               "errors; a command's own output is not a log)");
  // Before any command runs: a command's output is for people, its log only when asked.
  app.parse_complete_callback([] {
    const int verbosity = Globals().verbosity;
    const log::Level level = verbosity >= 2   ? log::Level::kDebug
                             : verbosity == 1 ? log::Level::kInfo
                                              : log::Level::kWarn;
    (void)log::Init({.level = level});
  });
  app.add_subcommand("version", "Print the version, the source revision and the snapshotters")
      ->callback([] { std::fputs(stack::About("berth").c_str(), stdout); });
  AddRefCommand(app, status);
  AddPullCommand(app, status);
  AddImageCommands(app, status);
  AddContentCommand(app, status);
  AddMountCommands(app, status);
  AddMaintenanceCommands(app, status);
}

}  // namespace berth::cli
