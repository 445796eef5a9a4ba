// berth: the command-line front end. It parses arguments and prints; every operation lives in a
// library module (see commands.h).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cmd/berth/commands.h"
#include "cmd/berth/common.h"

int main(int argc, char** argv) {
  CLI::App app{"berth: a container image service (OCI/Docker pull, content store, snapshots, CRI)"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand
  app.add_option("--config", berth::cli::Globals().config_file,
                 "Config file (default /etc/berth/config.toml if present)");
  app.add_option("--root", berth::cli::Globals().root,
                 "Root directory (default /var/lib/berth); given, it is used directly unless "
                 "the berthd holding it answers at the address");
  app.add_option("--address", berth::cli::Globals().address,
                 "berthd's CRI socket, unix:///PATH (default: the config's address, "
                 "unix:///run/berth/berth.sock)");
  int status = 0;
  app.add_subcommand("version", "Print the version")->callback([] { std::puts("berth 0.1.0"); });
  berth::cli::AddRefCommand(app, &status);
  berth::cli::AddPullCommand(app, &status);
  berth::cli::AddImageCommands(app, &status);
  berth::cli::AddContentCommand(app, &status);
  berth::cli::AddMountCommands(app, &status);
  berth::cli::AddMaintenanceCommands(app, &status);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return status;
}
