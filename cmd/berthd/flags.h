// File: cmd/berthd/flags.h
//
// berthd's command line: its flags (each overrides the config file's key of the same name) and
// BuildApp, which main() parses with and cmd/docgen reads to write berthd(8).
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

namespace berth::daemon {

struct Flags {
  std::string config_file;
  std::string root;
  std::string state;
  std::string address;
  std::optional<std::string> snapshotter_address;
  std::optional<std::string> metrics_address;
  std::string log_level;
  int grace_seconds = 10;
};

// Gives a fresh `app` berthd's description and flags, parsed into `flags` (which must outlive
// the app); --version prints stack::About("berthd").
void BuildApp(CLI::App& app, Flags& flags);

}  // namespace berth::daemon
