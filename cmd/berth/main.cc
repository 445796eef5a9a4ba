// berth: the command-line front end. It parses arguments and prints; every operation lives in a
// library module (see commands.h), and the command line itself in app.h.
#include <CLI/CLI.hpp>

#include "cmd/berth/app.h"

int main(int argc, char** argv) {
  CLI::App app;
  int status = 0;
  berth::cli::BuildApp(app, &status);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return status;
}
