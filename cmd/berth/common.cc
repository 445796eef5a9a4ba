#include "cmd/berth/common.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace berth::cli {

GlobalOptions& Globals() {
  static GlobalOptions options;
  return options;
}

Result<config::Config> LoadConfig() {
  const GlobalOptions& options = Globals();
  config::Config config = config::DefaultConfig();
  std::string path = options.config_file;
  if (path.empty() && ::access("/etc/berth/config.toml", R_OK) == 0) {
    path = "/etc/berth/config.toml";
  }
  if (!path.empty()) {
    BERTH_ASSIGN_OR_RETURN(config, config::LoadConfigFile(path));
  }
  if (!options.root.empty()) config.root = options.root;
  if (!options.address.empty()) config.address = options.address;
  return config;
}

Result<std::unique_ptr<content::Store>> OpenContentStore(const config::Config& config) {
  return content::Store::Open({.root = config.root / "content"});
}

int PrintError(const Error& error) {
  std::fprintf(stderr, "error: %s\n", error.ToString().c_str());
  return 1;
}

std::string HumanSize(int64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1000 && unit < 4) {
    value /= 1000;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", value, units[unit]);
}

}  // namespace berth::cli
