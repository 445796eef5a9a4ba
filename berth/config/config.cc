#include "berth/config/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <utility>

#include "berth/base/byte_size.h"
#include "berth/base/file_util.h"
#include "berth/config/toml_reader.h"
#include "berth/config/units.h"

namespace berth::config {

std::string_view FallbackName(Fallback fallback) {
  switch (fallback) {
    case Fallback::kAlways:
      return "always";
    case Fallback::kNever:
      return "never";
  }
  return "always";
}

std::string_view SnapshotterName(SnapshotterKind kind) {
  switch (kind) {
    case SnapshotterKind::kOverlayfs:
      return "overlayfs";
    case SnapshotterKind::kNative:
      return "native";
    case SnapshotterKind::kErofs:
      return "erofs";
  }
  return "overlayfs";
}

std::string_view ConfigFormatName(ConfigFormat format) {
  switch (format) {
    case ConfigFormat::kBerth:
      return "berth";
    case ConfigFormat::kContainerd:
      return "containerd";
  }
  return "berth";
}

Config DefaultConfig() { return Config{}; }

std::string SnapshotterAddress(const Config& config) {
  if (config.snapshotter_address) return *config.snapshotter_address;
  const size_t slash = config.address.rfind('/');
  return config.address.substr(0, slash + 1) + "snapshotter.sock";
}

uint64_t MinFreeSpace::ReserveFor(uint64_t filesystem_size) const {
  const auto share = static_cast<uint64_t>(static_cast<double>(filesystem_size) * percent / 100.0);
  return std::max(bytes, share);
}

std::string MinFreeSpace::ToString() const {
  if (percent == 0) return FormatByteSize(bytes);
  if (bytes == 0) return fmt::format("{:g}%", percent);
  return fmt::format("the larger of {:g}% and {}", percent, FormatByteSize(bytes));
}

namespace {

// The plugin IDs under which containerd's CRI plugin keeps its registry section, in the order
// they are read: config version 1, version 2 (containerd 1.x), version 3 (containerd 2.x).
constexpr std::array<std::string_view, 3> kContainerdCriPlugins = {
    "cri", "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images"};

constexpr int kMaxConcurrentDownloads = 1024;

using internal::ChildPath;
using internal::Entry;
using internal::KeySegment;
using internal::Reader;

// ---------------------------------------------------------------------------------------------
// Registry sections.

enum class Dialect { kBerth, kContainerd };

// A parsed registry section plus where its conflicting settings were written, so that the
// config_path checks, done after merging, can point at the right line.
struct RegistrySection {
  RegistryConfig value;
  std::string config_path_site;  // "file:line:col" of config_path; empty when unset
  std::string config_path_path;
  std::map<std::string, std::pair<std::string, std::string>> mirror_sites;  // host → site, path
  std::map<std::string, std::pair<std::string, std::string>> tls_sites;     // host → site, path
};

// Host keys of mirrors and configs are bare hosts ("r.local:5000"), not URLs.
Result<void> CheckHostKey(const Reader& reader, const Entry& entry) {
  std::string_view host = entry.key.str();
  if (host.empty()) return Fail(reader.Problem(entry, "must not be an empty host name"));
  bool has_space = std::any_of(host.begin(), host.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
  });
  if (has_space || host.find('/') != std::string_view::npos) {
    return Fail(
        reader.Problem(entry,
                       "must be named by a host like \"r.local\" or \"r.local:5000\", without a "
                       "scheme, path or spaces"));
  }
  return Ok();
}

// Mirror endpoints are URLs with a scheme and a host, as containerd requires.
Result<void> CheckEndpoint(const Reader& reader, const Entry& entry, size_t index,
                           std::string_view endpoint) {
  std::string_view rest;
  for (std::string_view scheme : {std::string_view("https://"), std::string_view("http://")}) {
    if (endpoint.substr(0, scheme.size()) == scheme) rest = endpoint.substr(scheme.size());
  }
  if (rest.empty() || rest.front() == '/') {
    Entry element{entry.key, entry.node, fmt::format("{}[{}]", entry.path, index)};
    return Fail(reader.Problem(
        element, fmt::format("must be a URL with an http:// or https:// scheme and a host, like "
                             "\"https://mirror.local:5000\"; got \"{}\"",
                             endpoint)));
  }
  return Ok();
}

// True if `text` is standard base64 (with padding) of something containing a colon.
bool IsBase64UserColonPassword(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) return false;
  auto sextet = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  size_t padding = 0;
  while (padding < 2 && text.size() > padding && text[text.size() - 1 - padding] == '=') {
    ++padding;
  }
  std::string decoded;
  uint32_t bits = 0;
  int bit_count = 0;
  for (size_t i = 0; i < text.size() - padding; ++i) {
    int value = sextet(text[i]);
    if (value < 0) return false;
    bits = (bits << 6) | static_cast<uint32_t>(value);
    bit_count += 6;
    if (bit_count >= 8) {
      bit_count -= 8;
      decoded.push_back(static_cast<char>((bits >> bit_count) & 0xFF));
    }
  }
  return decoded.find(':') != std::string::npos;
}

Result<AuthConfig> ReadAuth(const Reader& reader, const Entry& auth_entry) {
  BERTH_ASSIGN_OR_RETURN(const toml::table* table, reader.Table(auth_entry));
  AuthConfig auth;
  for (auto&& [key, node] : *table) {
    Entry entry{key, node, ChildPath(auth_entry.path, key.str())};
    std::string_view name = key.str();
    if (name == "username") {
      BERTH_ASSIGN_OR_RETURN(auth.username, reader.String(entry));
    } else if (name == "password") {
      BERTH_ASSIGN_OR_RETURN(std::string value, reader.String(entry));
      auth.password = Secret(std::move(value));
    } else if (name == "auth") {
      BERTH_ASSIGN_OR_RETURN(std::string value, reader.String(entry));
      if (!value.empty() && !IsBase64UserColonPassword(value)) {
        return Fail(reader.Problem(
            entry, "must be the base64 encoding of <username>:<password> (value not shown)"));
      }
      auth.auth = Secret(std::move(value));
    } else if (name == "identitytoken") {
      BERTH_ASSIGN_OR_RETURN(std::string value, reader.String(entry));
      auth.identity_token = Secret(std::move(value));
    } else {
      return Fail(reader.UnknownKey(entry, auth_entry.path,
                                    {"username", "password", "auth", "identitytoken"}));
    }
  }
  return auth;
}

Result<TlsConfig> ReadTls(const Reader& reader, const Entry& tls_entry) {
  BERTH_ASSIGN_OR_RETURN(const toml::table* table, reader.Table(tls_entry));
  TlsConfig tls;
  for (auto&& [key, node] : *table) {
    Entry entry{key, node, ChildPath(tls_entry.path, key.str())};
    std::string_view name = key.str();
    if (name == "ca_file") {
      BERTH_ASSIGN_OR_RETURN(tls.ca_file, reader.String(entry));
    } else if (name == "cert_file") {
      BERTH_ASSIGN_OR_RETURN(tls.cert_file, reader.String(entry));
    } else if (name == "key_file") {
      BERTH_ASSIGN_OR_RETURN(tls.key_file, reader.String(entry));
    } else if (name == "insecure_skip_verify") {
      BERTH_ASSIGN_OR_RETURN(tls.insecure_skip_verify, reader.Bool(entry));
    } else {
      return Fail(reader.UnknownKey(entry, tls_entry.path,
                                    {"ca_file", "cert_file", "key_file", "insecure_skip_verify"}));
    }
  }
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    std::string_view missing = tls.cert_file.empty() ? "cert_file" : "key_file";
    std::string_view present = tls.cert_file.empty() ? "key_file" : "cert_file";
    return Fail(reader.Problem(
        tls_entry,
        fmt::format("sets {} without {}; a client certificate needs both", present, missing)));
  }
  return tls;
}

Result<void> ReadHostConfigs(const Reader& reader, const Entry& configs_entry, Dialect dialect,
                             RegistrySection& section) {
  BERTH_ASSIGN_OR_RETURN(const toml::table* hosts, reader.Table(configs_entry));
  for (auto&& [host_key, host_node] : *hosts) {
    Entry host_entry{host_key, host_node, ChildPath(configs_entry.path, host_key.str())};
    BERTH_RETURN_IF_ERROR(CheckHostKey(reader, host_entry));
    BERTH_ASSIGN_OR_RETURN(const toml::table* table, reader.Table(host_entry));
    HostConfig host;
    for (auto&& [key, node] : *table) {
      Entry entry{key, node, ChildPath(host_entry.path, key.str())};
      std::string_view name = key.str();
      if (name == "auth") {
        BERTH_ASSIGN_OR_RETURN(host.auth, ReadAuth(reader, entry));
      } else if (name == "tls") {
        BERTH_ASSIGN_OR_RETURN(host.tls, ReadTls(reader, entry));
        section.tls_sites[std::string(host_key.str())] = {reader.Site(entry), entry.path};
      } else if (name == "fallback" && dialect == Dialect::kBerth) {
        BERTH_ASSIGN_OR_RETURN(host.fallback,
                               reader.Choice<Fallback>(entry, {{"always", Fallback::kAlways},
                                                               {"never", Fallback::kNever}}));
      } else if (name == "fallback") {
        return Fail(reader.Problem(
            entry, fmt::format("is a berth setting that containerd does not have; set it in "
                               "berth's own section, [registry.configs.{}]",
                               KeySegment(host_key.str()))));
      } else if (dialect == Dialect::kBerth) {
        return Fail(reader.UnknownKey(entry, host_entry.path, {"auth", "tls", "fallback"}));
      } else {
        return Fail(reader.UnknownKey(entry, host_entry.path, {"auth", "tls"}));
      }
    }
    section.value.configs[std::string(host_key.str())] = std::move(host);
  }
  return Ok();
}

Result<void> ReadMirrors(const Reader& reader, const Entry& mirrors_entry,
                         RegistrySection& section) {
  BERTH_ASSIGN_OR_RETURN(const toml::table* hosts, reader.Table(mirrors_entry));
  for (auto&& [host_key, host_node] : *hosts) {
    Entry host_entry{host_key, host_node, ChildPath(mirrors_entry.path, host_key.str())};
    if (host_key.str() != "*") BERTH_RETURN_IF_ERROR(CheckHostKey(reader, host_entry));
    BERTH_ASSIGN_OR_RETURN(const toml::table* table, reader.Table(host_entry));
    Mirror mirror;
    for (auto&& [key, node] : *table) {
      Entry entry{key, node, ChildPath(host_entry.path, key.str())};
      if (key.str() != "endpoint") {
        return Fail(reader.UnknownKey(entry, host_entry.path, {"endpoint"}));
      }
      BERTH_ASSIGN_OR_RETURN(mirror.endpoints, reader.StringArray(entry));
      for (size_t i = 0; i < mirror.endpoints.size(); ++i) {
        BERTH_RETURN_IF_ERROR(CheckEndpoint(reader, entry, i, mirror.endpoints[i]));
      }
    }
    section.mirror_sites[std::string(host_key.str())] = {reader.Site(host_entry), host_entry.path};
    section.value.mirrors[std::string(host_key.str())] = std::move(mirror);
  }
  return Ok();
}

Result<void> ReadHeaders(const Reader& reader, const Entry& headers_entry,
                         RegistrySection& section) {
  BERTH_ASSIGN_OR_RETURN(const toml::table* headers, reader.Table(headers_entry));
  for (auto&& [key, node] : *headers) {
    Entry entry{key, node, ChildPath(headers_entry.path, key.str())};
    if (key.str().empty()) return Fail(reader.Problem(entry, "must not be an empty header name"));
    // Header values may be credentials; StringArray never quotes a value.
    BERTH_ASSIGN_OR_RETURN(section.value.headers[std::string(key.str())],
                           reader.StringArray(entry, /*allow_empty_strings=*/true));
  }
  return Ok();
}

// containerd's deprecated `auths`: endpoint URL → auth, moved to configs.<host>.auth.
Result<void> ReadDeprecatedAuths(const Reader& reader, const Entry& auths_entry,
                                 RegistrySection& section) {
  BERTH_ASSIGN_OR_RETURN(const toml::table* endpoints, reader.Table(auths_entry));
  for (auto&& [key, node] : *endpoints) {
    Entry entry{key, node, ChildPath(auths_entry.path, key.str())};
    std::string_view host = key.str();
    if (size_t scheme_end = host.find("://"); scheme_end != std::string_view::npos) {
      host.remove_prefix(scheme_end + 3);
      host = host.substr(0, host.find('/'));
    }
    if (host.empty()) return Fail(reader.Problem(entry, "must name a registry host"));
    BERTH_ASSIGN_OR_RETURN(AuthConfig auth, ReadAuth(reader, entry));
    section.value.configs[std::string(host)].auth = std::move(auth);
  }
  return Ok();
}

Result<RegistrySection> ReadRegistrySection(const Reader& reader, const Entry& registry_entry,
                                            Dialect dialect) {
  BERTH_ASSIGN_OR_RETURN(const toml::table* table, reader.Table(registry_entry));
  RegistrySection section;
  const Entry* auths = nullptr;
  std::optional<Entry> auths_storage;
  for (auto&& [key, node] : *table) {
    Entry entry{key, node, ChildPath(registry_entry.path, key.str())};
    std::string_view name = key.str();
    if (name == "config_path") {
      BERTH_ASSIGN_OR_RETURN(section.value.config_path, reader.String(entry));
      section.config_path_site = reader.Site(entry);
      section.config_path_path = entry.path;
    } else if (name == "mirrors") {
      BERTH_RETURN_IF_ERROR(ReadMirrors(reader, entry, section));
    } else if (name == "configs") {
      BERTH_RETURN_IF_ERROR(ReadHostConfigs(reader, entry, dialect, section));
    } else if (name == "headers") {
      BERTH_RETURN_IF_ERROR(ReadHeaders(reader, entry, section));
    } else if (name == "auths" && dialect == Dialect::kContainerd) {
      auths_storage.emplace(entry);  // applied after configs, which it overrides
      auths = &*auths_storage;
    } else if (name == "auths") {
      return Fail(
          reader.Problem(entry,
                         "is containerd's deprecated spelling; write each host's credentials as "
                         "[registry.configs.\"<host>\".auth]"));
    } else {
      return Fail(reader.UnknownKey(
          entry, registry_entry.path,
          dialect == Dialect::kContainerd
              ? std::initializer_list<std::string_view>{"config_path", "mirrors", "configs",
                                                        "headers", "auths"}
              : std::initializer_list<std::string_view>{"config_path", "mirrors", "configs",
                                                        "headers"}));
    }
  }
  if (auths != nullptr) BERTH_RETURN_IF_ERROR(ReadDeprecatedAuths(reader, *auths, section));
  return section;
}

// Merges `later` over `merged` host by host; see "Precedence" in config.h.
void MergeInto(RegistrySection& merged, RegistrySection later) {
  if (!later.value.config_path.empty()) {
    merged.value.config_path = std::move(later.value.config_path);
    merged.config_path_site = std::move(later.config_path_site);
    merged.config_path_path = std::move(later.config_path_path);
  }
  for (auto& [host, mirror] : later.value.mirrors) {
    merged.value.mirrors[host] = std::move(mirror);
    merged.mirror_sites[host] = later.mirror_sites[host];
  }
  for (auto& [host, config] : later.value.configs) {
    merged.value.configs[host] = std::move(config);
    auto tls_site = later.tls_sites.find(host);
    if (tls_site != later.tls_sites.end()) {
      merged.tls_sites[host] = tls_site->second;
    } else {
      merged.tls_sites.erase(host);  // the later host entry replaced the one with tls
    }
  }
  for (auto& [name, values] : later.value.headers) merged.value.headers[name] = std::move(values);
}

// containerd refuses config_path together with mirrors or configs.tls: hosts.toml files carry
// those, and two sources would leave the precedence unclear.
Result<void> CheckConfigPathConflicts(const RegistrySection& merged) {
  if (merged.value.config_path.empty()) return Ok();
  if (!merged.mirror_sites.empty()) {
    const auto& [site, path] = merged.mirror_sites.begin()->second;
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("{}: {} cannot be set together with {} (at {}); configure mirrors in "
                            "the hosts.toml files under config_path, or remove config_path",
                            site, path, merged.config_path_path, merged.config_path_site));
  }
  if (!merged.tls_sites.empty()) {
    const auto& [site, path] = merged.tls_sites.begin()->second;
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("{}: {} cannot be set together with {} (at {}); configure TLS in "
                            "the hosts.toml files under config_path, or remove config_path",
                            site, path, merged.config_path_path, merged.config_path_site));
  }
  return Ok();
}

// ---------------------------------------------------------------------------------------------
// Top level and [pull].

// A count of downloads in [min, kMaxConcurrentDownloads]; `min_text` is how an error names the
// lower bound ("1", "0 (no limit)").
Result<int> ReadDownloadCount(const Reader& reader, const Entry& entry, int64_t min,
                              std::string_view min_text) {
  BERTH_ASSIGN_OR_RETURN(int64_t value, reader.Integer(entry));
  if (value < min || value > kMaxConcurrentDownloads) {
    return Fail(reader.Problem(entry, fmt::format("must be between {} and {}; got {}", min_text,
                                                  kMaxConcurrentDownloads, value)));
  }
  return static_cast<int>(value);
}

// A duration string in Go syntax ("5m"); `expected` completes "must be …" when the value is not
// a string. The range is the caller's to check.
Result<std::chrono::nanoseconds> ReadDuration(const Reader& reader, const Entry& entry,
                                              std::string_view expected) {
  if (!entry.node.is_string()) return Fail(reader.WrongType(entry, expected));
  Result<std::chrono::nanoseconds> duration = ParseDuration(entry.node.as_string()->get());
  if (!duration) {
    return Fail(reader.Problem(entry, "has an invalid value: " + duration.error().message()));
  }
  return *duration;
}

// Checks a duration from ReadDuration against [min, max]; `range` names them ("1s and 1h").
Result<void> CheckDurationBetween(const Reader& reader, const Entry& entry,
                                  std::chrono::nanoseconds duration, std::chrono::nanoseconds min,
                                  std::chrono::nanoseconds max, std::string_view range) {
  if (duration < min || duration > max) {
    return Fail(reader.Problem(entry, fmt::format("must be between {}; got \"{}\"", range,
                                                  entry.node.as_string()->get())));
  }
  return Ok();
}

// How a byte count key is written and what it may be.
struct ByteCountRule {
  // Reads the string form: ParseByteSize ("10GiB") or ParseByteRate ("100KiB/s").
  Result<uint64_t> (*parse)(std::string_view text);
  // Completes "must be …" when the value is neither an integer nor a string.
  std::string_view expected;
  // Whether zero is a valid value (it usually means "off").
  bool zero_allowed;
  // The problem of an integer below the allowed minimum; " got <n>" follows it.
  std::string_view integer_too_small;
};

// A byte count written as an integer (bytes) or as a string `rule.parse` reads.
Result<uint64_t> ReadByteCount(const Reader& reader, const Entry& entry,
                               const ByteCountRule& rule) {
  if (const toml::value<int64_t>* integer = entry.node.as_integer()) {
    const int64_t min = rule.zero_allowed ? 0 : 1;
    if (integer->get() < min) {
      return Fail(
          reader.Problem(entry, fmt::format("{}; got {}", rule.integer_too_small, integer->get())));
    }
    return static_cast<uint64_t>(integer->get());
  }
  if (const toml::value<std::string>* text = entry.node.as_string()) {
    Result<uint64_t> parsed = rule.parse(text->get());
    if (!parsed) {
      return Fail(reader.Problem(entry, "has an invalid value: " + parsed.error().message()));
    }
    if (*parsed == 0 && !rule.zero_allowed) {
      return Fail(reader.Problem(entry, "must be more than zero bytes"));
    }
    return *parsed;
  }
  return Fail(reader.WrongType(entry, rule.expected));
}

// pull.min_free_space: a percentage of the filesystem ("5%"), or a byte count as ReadByteCount
// reads it ("2GiB", integer bytes).
Result<MinFreeSpace> ReadMinFreeSpace(const Reader& reader, const Entry& entry) {
  const toml::value<std::string>* text = entry.node.as_string();
  if (text != nullptr && text->get().ends_with('%')) {
    const std::string number = text->get().substr(0, text->get().size() - 1);
    char* end = nullptr;
    const double percent = number.empty() || !std::isdigit(static_cast<unsigned char>(number[0]))
                               ? -1
                               : std::strtod(number.c_str(), &end);
    if (percent < 0 || end != number.c_str() + number.size() || percent > 90) {
      return Fail(reader.Problem(
          entry, fmt::format("must be a percentage between 0% and 90%; got \"{}\"", text->get())));
    }
    return MinFreeSpace{.bytes = 0, .percent = percent};
  }
  BERTH_ASSIGN_OR_RETURN(
      uint64_t bytes,
      ReadByteCount(reader, entry,
                    {.parse = ParseByteSize,
                     .expected = "a size like \"2GiB\", a percentage of the filesystem like "
                                 "\"5%\", or integer bytes",
                     .zero_allowed = true,
                     .integer_too_small = "must not be negative (0 keeps no reserve)"}));
  return MinFreeSpace{.bytes = bytes, .percent = 0};
}

// pull.max_inflate_ratio: 0 (off) or a number from kMinInflateRatio to kMaxInflateRatio.
Result<double> ReadInflateRatio(const Reader& reader, const Entry& entry) {
  constexpr double kMinInflateRatio = 2;
  constexpr double kMaxInflateRatio = 1'000'000;
  std::optional<double> ratio;
  if (const toml::value<int64_t>* integer = entry.node.as_integer()) {
    ratio = static_cast<double>(integer->get());
  } else if (const toml::value<double>* floating = entry.node.as_floating_point()) {
    ratio = floating->get();
  } else {
    return Fail(reader.WrongType(entry, "a number (0 disables the check)"));
  }
  if (*ratio != 0 && !(*ratio >= kMinInflateRatio && *ratio <= kMaxInflateRatio)) {
    return Fail(
        reader.Problem(entry, fmt::format("must be 0 (off) or between {:.0f} and {:.0f}; got {:g}",
                                          kMinInflateRatio, kMaxInflateRatio, *ratio)));
  }
  return *ratio;
}

// One key of a table of berth's ([pull], [peers]) and how its value is read into `Section`.
template <typename Section>
struct TableKey {
  std::string_view name;
  Result<void> (*read)(const Reader& reader, const Entry& entry, Section& section);
};

// Reads the table `table_entry` into `section` through `keys`, the only list of the table's keys:
// each key is read by its entry, and any other is an unknown-key error listing them in order.
template <typename Section, size_t N>
Result<void> ReadKeyTable(const Reader& reader, const Entry& table_entry,
                          std::string_view table_name, const TableKey<Section> (&keys)[N],
                          Section& section) {
  std::array<std::string_view, N> names;
  for (size_t i = 0; i < N; ++i) names[i] = keys[i].name;
  BERTH_ASSIGN_OR_RETURN(const toml::table* table, reader.Table(table_entry));
  for (auto&& [key, node] : *table) {
    Entry entry{key, node, ChildPath(table_entry.path, key.str())};
    const std::string_view name = key.str();  // a structured binding cannot be captured (clang 14)
    const auto* known =
        std::find_if(std::begin(keys), std::end(keys),
                     [&](const TableKey<Section>& table_key) { return table_key.name == name; });
    if (known == std::end(keys)) return Fail(reader.UnknownKey(entry, table_name, names));
    BERTH_RETURN_IF_ERROR(known->read(reader, entry, section));
  }
  return Ok();
}

using PullKey = TableKey<PullConfig>;

// Every key of [pull], in the order an unknown-key error lists them (see ReadKeyTable).
constexpr PullKey kPullKeys[] = {
    {"max_concurrent_downloads",
     [](const Reader& reader, const Entry& entry, PullConfig& pull) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(pull.max_concurrent_downloads,
                              ReadDownloadCount(reader, entry, 1, "1"));
       return Ok();
     }},
    {"snapshotter",
     [](const Reader& reader, const Entry& entry, PullConfig& pull) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(
           pull.snapshotter,
           reader.Choice<SnapshotterKind>(entry, {{"overlayfs", SnapshotterKind::kOverlayfs},
                                                  {"native", SnapshotterKind::kNative},
                                                  {"erofs", SnapshotterKind::kErofs}}));
       return Ok();
     }},
    {"image_pull_progress_timeout",
     [](const Reader& reader, const Entry& entry, PullConfig& pull) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(
           std::chrono::nanoseconds timeout,
           ReadDuration(reader, entry, "a duration string like \"5m\" or \"30s\""));
       if (timeout.count() < 0) {
         return Fail(reader.Problem(entry, "must not be negative (\"0\" disables the timeout)"));
       }
       pull.image_pull_progress_timeout = timeout;
       return Ok();
     }},
    {"max_concurrent_downloads_total",
     [](const Reader& reader, const Entry& entry, PullConfig& pull) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(pull.max_concurrent_downloads_total,
                              ReadDownloadCount(reader, entry, 0, "0 (no limit)"));
       return Ok();
     }},
    {"max_concurrent_downloads_per_registry",
     [](const Reader& reader, const Entry& entry, PullConfig& pull) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(pull.max_concurrent_downloads_per_registry,
                              ReadDownloadCount(reader, entry, 0, "0 (no limit)"));
       return Ok();
     }},
    {"min_download_speed",
     [](const Reader& reader, const Entry& entry, PullConfig& pull) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(
           pull.min_download_speed,
           ReadByteCount(reader, entry,
                         {.parse = ParseByteRate,
                          .expected = "a rate string like \"100KiB/s\" or an integer (bytes per "
                                      "second)",
                          .zero_allowed = true,
                          .integer_too_small = "must not be negative (0 disables the floor)"}));
       return Ok();
     }},
    {"min_download_speed_window",
     [](const Reader& reader, const Entry& entry, PullConfig& pull) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(std::chrono::nanoseconds window,
                              ReadDuration(reader, entry, "a duration string like \"30s\""));
       BERTH_RETURN_IF_ERROR(CheckDurationBetween(reader, entry, window, std::chrono::seconds(1),
                                                  std::chrono::hours(1), "1s and 1h"));
       pull.min_download_speed_window = window;
       return Ok();
     }},
    {"sync",
     [](const Reader& reader, const Entry& entry, PullConfig& pull) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(pull.sync,
                              reader.Choice<Durability>(
                                  entry, {{DurabilityName(Durability::kNone), Durability::kNone},
                                          {DurabilityName(Durability::kLayer), Durability::kLayer},
                                          {DurabilityName(Durability::kFile), Durability::kFile}}));
       return Ok();
     }},
    {"layer_threads",
     [](const Reader& reader, const Entry& entry, PullConfig& pull) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(pull.layer_threads,
                              reader.Choice<LayerThreads>(entry, {{"auto", LayerThreads::kAuto},
                                                                  {"1", LayerThreads::kOne},
                                                                  {"2", LayerThreads::kTwo},
                                                                  {"3", LayerThreads::kThree}}));
       return Ok();
     }},
    {"max_layer_size",
     [](const Reader& reader, const Entry& entry, PullConfig& pull) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(
           pull.max_layer_size,
           ReadByteCount(reader, entry,
                         {.parse = ParseByteSize,
                          .expected = "an integer (bytes) or a size string like \"10GiB\"",
                          .zero_allowed = false,
                          .integer_too_small = "must be a positive number of bytes"}));
       return Ok();
     }},
    {"min_free_space",
     [](const Reader& reader, const Entry& entry, PullConfig& pull) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(pull.min_free_space, ReadMinFreeSpace(reader, entry));
       return Ok();
     }},
    {"max_inflate_ratio",
     [](const Reader& reader, const Entry& entry, PullConfig& pull) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(pull.max_inflate_ratio, ReadInflateRatio(reader, entry));
       return Ok();
     }},
    {"discard_unpacked_layers",
     [](const Reader& reader, const Entry& entry, PullConfig& pull) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(pull.discard_unpacked_layers, reader.Bool(entry));
       return Ok();
     }},
    {"resume_window",
     [](const Reader& reader, const Entry& entry, PullConfig& pull) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(
           std::chrono::nanoseconds window,
           ReadDuration(reader, entry, "a duration string like \"1h\" (\"0\" disables)"));
       BERTH_RETURN_IF_ERROR(CheckDurationBetween(reader, entry, window,
                                                  std::chrono::nanoseconds(0),
                                                  std::chrono::hours(24 * 30), "0 and 720h"));
       pull.resume_window = std::chrono::duration_cast<std::chrono::seconds>(window);
       return Ok();
     }},
    {"pinned_images",
     [](const Reader& reader, const Entry& entry, PullConfig& pull) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(pull.pinned_images, reader.StringArray(entry));
       return Ok();
     }},
};

Result<void> ReadPull(const Reader& reader, const Entry& pull_entry, PullConfig& pull) {
  return ReadKeyTable(reader, pull_entry, "[pull]", kPullKeys, pull);
}

Result<std::filesystem::path> ReadAbsolutePath(const Reader& reader, const Entry& entry) {
  BERTH_ASSIGN_OR_RETURN(std::string text, reader.String(entry));
  if (text.empty() || text.front() != '/') {
    return Fail(reader.Problem(entry, fmt::format("must be an absolute path; got \"{}\"", text)));
  }
  return std::filesystem::path(text);
}

Result<std::string> ReadAddress(const Reader& reader, const Entry& entry) {
  BERTH_ASSIGN_OR_RETURN(std::string text, reader.String(entry));
  constexpr std::string_view kUnix = "unix://";
  if (text.substr(0, kUnix.size()) != kUnix || text.size() <= kUnix.size() + 1 ||
      text[kUnix.size()] != '/') {
    return Fail(reader.Problem(
        entry, fmt::format("must be unix:// followed by an absolute socket path, like "
                           "\"unix:///run/berth/berth.sock\"; got \"{}\"",
                           text)));
  }
  return text;
}

// A listening address: "" (off) or host:port, "[v6]:port" for an IPv6 literal; `none` says what
// "" means ("no metrics endpoint"). The host is resolved (and the port bound) by berthd, not
// here.
Result<std::string> ReadListenAddress(const Reader& reader, const Entry& entry,
                                      std::string_view none) {
  BERTH_ASSIGN_OR_RETURN(std::string text, reader.String(entry));
  if (text.empty()) return text;
  std::string_view host = text;
  std::string_view port;
  if (const size_t colon = text.rfind(':'); colon != std::string::npos) {
    host = std::string_view(text).substr(0, colon);
    port = std::string_view(text).substr(colon + 1);
  }
  const bool bracketed = host.starts_with('[') && host.ends_with(']');
  const bool port_ok =
      !port.empty() && port.size() <= 5 &&
      std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
      std::stoul(std::string(port)) <= 65535;
  if (!port_ok || (!bracketed && host.find(':') != std::string_view::npos)) {
    return Fail(
        reader.Problem(entry, fmt::format("must be host:port (\"[::1]:port\" for IPv6), like "
                                          "\"127.0.0.1:1338\", or \"\" for {}; got \"{}\"",
                                          none, text)));
  }
  return text;
}

using PeersKey = TableKey<PeersConfig>;

// Every key of [peers], in the order an unknown-key error lists them (as kPullKeys).
constexpr PeersKey kPeersKeys[] = {
    {"listen",
     [](const Reader& reader, const Entry& entry, PeersConfig& peers) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(peers.listen, ReadListenAddress(reader, entry, "no peer endpoint"));
       return Ok();
     }},
    {"max_concurrent_uploads",
     [](const Reader& reader, const Entry& entry, PeersConfig& peers) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(peers.max_concurrent_uploads,
                              ReadDownloadCount(reader, entry, 1, "1"));
       return Ok();
     }},
    {"max_upload_rate",
     [](const Reader& reader, const Entry& entry, PeersConfig& peers) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(
           peers.max_upload_rate,
           ReadByteCount(reader, entry,
                         {.parse = ParseByteRate,
                          .expected = "a rate string like \"100MiB/s\" or an integer (bytes per "
                                      "second)",
                          .zero_allowed = true,
                          .integer_too_small = "must not be negative (0 is no limit)"}));
       return Ok();
     }},
    {"tls_cert",
     [](const Reader& reader, const Entry& entry, PeersConfig& peers) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(peers.tls_cert, reader.String(entry));
       return Ok();
     }},
    {"tls_key",
     [](const Reader& reader, const Entry& entry, PeersConfig& peers) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(peers.tls_key, reader.String(entry));
       return Ok();
     }},
    {"tls_client_ca",
     [](const Reader& reader, const Entry& entry, PeersConfig& peers) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(peers.tls_client_ca, reader.String(entry));
       return Ok();
     }},
    {"fetch_missing",
     [](const Reader& reader, const Entry& entry, PeersConfig& peers) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(peers.fetch_missing, reader.Bool(entry));
       return Ok();
     }},
    // The pulling side: who the peers are and how a pull asks them.
    {"static",
     [](const Reader& reader, const Entry& entry, PeersConfig& peers) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(peers.static_peers, reader.StringArray(entry));
       return Ok();
     }},
    {"dns_name",
     [](const Reader& reader, const Entry& entry, PeersConfig& peers) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(peers.dns_name, reader.String(entry));
       return Ok();
     }},
    {"port",
     [](const Reader& reader, const Entry& entry, PeersConfig& peers) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(int64_t port, reader.Integer(entry));
       if (port < 1 || port > 65535) {
         return Fail(
             reader.Problem(entry, fmt::format("must be between 1 and 65535; got {}", port)));
       }
       peers.port = static_cast<uint16_t>(port);
       return Ok();
     }},
    {"self",
     [](const Reader& reader, const Entry& entry, PeersConfig& peers) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(peers.self, reader.String(entry));
       return Ok();
     }},
    {"home_peers",
     [](const Reader& reader, const Entry& entry, PeersConfig& peers) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(int64_t count, reader.Integer(entry));
       if (count < 0 || count > kMaxHomePeers) {
         return Fail(reader.Problem(
             entry,
             fmt::format("must be between 0 (ask no peer) and {}; got {}", kMaxHomePeers, count)));
       }
       peers.home_peers = static_cast<int>(count);
       return Ok();
     }},
    {"tls_ca",
     [](const Reader& reader, const Entry& entry, PeersConfig& peers) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(peers.tls_ca, reader.String(entry));
       return Ok();
     }},
    {"refresh_interval",
     [](const Reader& reader, const Entry& entry, PeersConfig& peers) -> Result<void> {
       BERTH_ASSIGN_OR_RETURN(std::chrono::nanoseconds interval,
                              ReadDuration(reader, entry, "a duration string like \"30s\""));
       BERTH_RETURN_IF_ERROR(CheckDurationBetween(reader, entry, interval, std::chrono::seconds(1),
                                                  std::chrono::hours(1), "1s and 1h"));
       peers.refresh_interval = std::chrono::duration_cast<std::chrono::milliseconds>(interval);
       return Ok();
     }},
};

// A DNS name without a port is Membership::Create's to refuse (berthd, at start): the key
// examples must parse one by one.
Result<void> ReadPeers(const Reader& reader, const Entry& peers_entry, PeersConfig& peers) {
  BERTH_RETURN_IF_ERROR(ReadKeyTable(reader, peers_entry, "[peers]", kPeersKeys, peers));
  if (peers.tls_cert.empty() != peers.tls_key.empty()) {
    return Fail(reader.Problem(
        peers_entry, peers.tls_cert.empty()
                         ? "sets tls_key without tls_cert; a server certificate needs both"
                         : "sets tls_cert without tls_key; a server certificate needs both"));
  }
  if (!peers.tls_client_ca.empty() && peers.tls_cert.empty()) {
    return Fail(reader.Problem(peers_entry,
                               "sets tls_client_ca without tls_cert and tls_key; client "
                               "certificates are asked for only over TLS"));
  }
  return Ok();
}

Result<log::Level> ReadLogLevel(const Reader& reader, const Entry& entry) {
  return reader.Choice<log::Level>(entry, {{"trace", log::Level::kTrace},
                                           {"debug", log::Level::kDebug},
                                           {"info", log::Level::kInfo},
                                           {"warn", log::Level::kWarn},
                                           {"error", log::Level::kError},
                                           {"off", log::Level::kOff}});
}

// Reads the CRI registry sections out of containerd's [plugins] table, in kContainerdCriPlugins
// order, ignoring every other plugin.
Result<std::vector<RegistrySection>> ReadContainerdPlugins(const Reader& reader,
                                                           const Entry& plugins_entry) {
  BERTH_ASSIGN_OR_RETURN(const toml::table* plugins, reader.Table(plugins_entry));
  std::vector<RegistrySection> sections;
  for (std::string_view plugin_id : kContainerdCriPlugins) {
    auto plugin = plugins->find(plugin_id);
    if (plugin == plugins->end()) continue;
    Entry plugin_entry{plugin->first, plugin->second, ChildPath(plugins_entry.path, plugin_id)};
    BERTH_ASSIGN_OR_RETURN(const toml::table* plugin_table, reader.Table(plugin_entry));
    auto registry = plugin_table->find("registry");
    if (registry == plugin_table->end()) continue;
    Entry registry_entry{registry->first, registry->second,
                         ChildPath(plugin_entry.path, "registry")};
    BERTH_ASSIGN_OR_RETURN(RegistrySection section,
                           ReadRegistrySection(reader, registry_entry, Dialect::kContainerd));
    sections.push_back(std::move(section));
  }
  return sections;
}

Result<Config> ReadDocument(const Reader& reader, const toml::table& document) {
  Config config;
  const bool containerd = document.contains("plugins") || document.contains("version");
  config.format = containerd ? ConfigFormat::kContainerd : ConfigFormat::kBerth;

  std::vector<RegistrySection> containerd_sections;
  std::optional<RegistrySection> berth_section;
  for (auto&& [key, node] : document) {
    Entry entry{key, node, KeySegment(key.str())};
    std::string_view name = key.str();
    if (name == "root" || name == "state") {
      // In a containerd config these are containerd's own directories; see config.h.
      if (containerd) continue;
      BERTH_ASSIGN_OR_RETURN(std::filesystem::path path, ReadAbsolutePath(reader, entry));
      (name == "root" ? config.root : config.state) = std::move(path);
    } else if (name == "address") {
      BERTH_ASSIGN_OR_RETURN(config.address, ReadAddress(reader, entry));
    } else if (name == "upstream_image_endpoint") {
      BERTH_ASSIGN_OR_RETURN(config.upstream_image_endpoint, reader.String(entry));
      if (!config.upstream_image_endpoint.empty()) {
        BERTH_ASSIGN_OR_RETURN(config.upstream_image_endpoint, ReadAddress(reader, entry));
      }
    } else if (name == "snapshotter_address") {
      BERTH_ASSIGN_OR_RETURN(std::string address, reader.String(entry));
      if (!address.empty()) {
        BERTH_ASSIGN_OR_RETURN(address, ReadAddress(reader, entry));
      }
      config.snapshotter_address = std::move(address);
    } else if (name == "metrics_address") {
      BERTH_ASSIGN_OR_RETURN(config.metrics_address,
                             ReadListenAddress(reader, entry, "no metrics endpoint"));
    } else if (name == "log_level") {
      BERTH_ASSIGN_OR_RETURN(config.log_level, ReadLogLevel(reader, entry));
    } else if (name == "pull") {
      BERTH_RETURN_IF_ERROR(ReadPull(reader, entry, config.pull));
    } else if (name == "peers") {
      BERTH_RETURN_IF_ERROR(ReadPeers(reader, entry, config.peers));
    } else if (name == "registry") {
      BERTH_ASSIGN_OR_RETURN(berth_section, ReadRegistrySection(reader, entry, Dialect::kBerth));
    } else if (name == "plugins") {
      BERTH_ASSIGN_OR_RETURN(containerd_sections, ReadContainerdPlugins(reader, entry));
    } else if (!containerd) {
      return Fail(reader.UnknownKey(
          entry, "a berth config",
          {"root", "state", "address", "snapshotter_address", "upstream_image_endpoint",
           "metrics_address", "log_level", "pull", "registry", "peers"}));
    }
    // Anything else at the top of a containerd config belongs to containerd.
  }

  RegistrySection merged;
  for (RegistrySection& section : containerd_sections) MergeInto(merged, std::move(section));
  if (berth_section) MergeInto(merged, std::move(*berth_section));
  BERTH_RETURN_IF_ERROR(CheckConfigPathConflicts(merged));
  config.registry = std::move(merged.value);
  return config;
}

}  // namespace

Result<Config> ParseConfig(std::string_view toml_text, std::string_view source_name) {
  BERTH_ASSIGN_OR_RETURN(toml::table document, internal::ParseToml(toml_text, source_name));
  return ReadDocument(Reader(source_name), document);
}

Result<Config> LoadConfigFile(const std::filesystem::path& path) {
  Result<std::string> text = ReadFile(path, /*max_bytes=*/16 << 20);
  if (!text) {
    if (text.error().code() == ErrorCode::kNotFound) {
      return Fail(ErrorCode::kNotFound,
                  fmt::format("config file {} does not exist; create it or pass the path of an "
                              "existing file",
                              path.string()));
    }
    return WithContext(Result<Config>(Fail(std::move(text).error())),
                       fmt::format("load config {}", path.string()));
  }
  return ParseConfig(*text, path.string());
}

}  // namespace berth::config
