// berth: the command-line front end. It only parses arguments and prints; every operation lives
// in a library module.
#include <cstdio>

#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  CLI::App app{"berth: a container image service (OCI/Docker pull, content store, snapshots, CRI)"};
  app.require_subcommand(1);
  app.add_subcommand("version", "Print the version")->callback([] { std::puts("berth 0.1.0"); });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}
