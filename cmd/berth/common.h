// File: cmd/berth/common.h
//
// Shared pieces of the berth CLI: the global options and the objects built from them.
#pragma once

#include <memory>
#include <string>

#include "berth/base/result.h"
#include "berth/config/config.h"
#include "berth/content/store.h"

namespace berth::cli {

struct GlobalOptions {
  std::string config_file;  // empty: /etc/berth/config.toml when it exists, else defaults
  std::string root;         // overrides the config's root
  std::string address;      // overrides the config's address (berthd's socket)
  int verbosity = 0;        // -v: info, -vv: debug; 0: warnings and errors only
};

// The options registered on the top-level app (usable before or after the subcommand).
GlobalOptions& Globals();

// Loads the config named by the global options, with --root and --address applied.
Result<config::Config> LoadConfig();

// Opens the content store under the config's root.
Result<std::unique_ptr<content::Store>> OpenContentStore(const config::Config& config);

// Prints "error: <message>" to stderr and returns exit status 1.
int PrintError(const Error& error);

// "12.3 MB" style sizes (decimal units, like docker).
std::string HumanSize(int64_t bytes);

}  // namespace berth::cli
