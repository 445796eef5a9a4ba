// Fuzzes the TOML configuration loaders (berth/config): the berth/containerd config file
// (ParseConfig) and a registry's hosts.toml (ParseHostsFile). Neither touches the filesystem.
// Invariants: errors are kInvalidArgument and start with the source name, as documented; an
// accepted config parses to the same value a second time.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "berth/config/config.h"
#include "berth/config/hosts_dir.h"
#include "fuzz/fuzz_check.h"

namespace {

constexpr std::string_view kConfigSource = "/etc/berth/berth.toml";
constexpr std::string_view kHostsSource = "/etc/berth/certs.d/registry.example:5000/hosts.toml";

void CheckError(const berth::Error& error, std::string_view source) {
  FUZZ_CHECK(error.code() == berth::ErrorCode::kInvalidArgument, error.message());
  FUZZ_CHECK(error.message().starts_with(source), error.message());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace config = berth::config;
  std::string_view text(reinterpret_cast<const char*>(data), size);

  berth::Result<config::Config> parsed = config::ParseConfig(text, kConfigSource);
  if (parsed) {
    berth::Result<config::Config> again = config::ParseConfig(text, kConfigSource);
    FUZZ_CHECK(again.has_value() && *again == *parsed, "ParseConfig is not deterministic");
  } else {
    CheckError(parsed.error(), kConfigSource);
  }

  berth::Result<config::HostsFile> hosts =
      config::ParseHostsFile(text, kHostsSource, "registry.example:5000");
  if (!hosts) CheckError(hosts.error(), kHostsSource);
  return 0;
}
