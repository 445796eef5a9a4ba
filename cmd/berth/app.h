// File: cmd/berth/app.h
//
// The whole berth command line in one place: BuildApp gives `app` its description, the global
// options and every subcommand (commands.h). main() parses with it, and cmd/docgen reads the
// same app to write berth(1) and the bash completion, so neither can drift from --help.
#pragma once

#include <CLI/CLI.hpp>

namespace berth::cli {

// Fills a fresh CLI::App. Each subcommand's callback stores the exit status in `*status`, which
// must outlive the app.
void BuildApp(CLI::App& app, int* status);

}  // namespace berth::cli
