// File: berth/config/config.h
//
// Config is berth's daemon configuration, loaded from a TOML file (/etc/berth/config.toml by
// default). It is a plain value: the loader fills it in once, and the composition root hands
// pieces of it to the modules that need them. Nothing here opens sockets or certificate files;
// parsing only checks that the file is well formed and its values are in range.
//
// Two spellings of the registry settings are accepted, so a containerd config.toml can be used
// as is:
//
//   # containerd's CRI plugin (config version 2, containerd 1.x)
//   version = 2
//   [plugins."io.containerd.grpc.v1.cri".registry]
//     config_path = ""
//   [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
//     endpoint = ["https://mirror.local", "https://registry-1.docker.io"]
//   [plugins."io.containerd.grpc.v1.cri".registry.configs."r.local".auth]
//     username = "ci"
//     password = "…"            # also: auth (base64 "user:pass"), identitytoken
//   [plugins."io.containerd.grpc.v1.cri".registry.configs."r.local".tls]
//     ca_file = "/etc/certs/r.local/ca.pem"   # also: cert_file, key_file, insecure_skip_verify
//
//   The same section is read from `[plugins.cri.registry]` (config version 1) and from
//   `[plugins."io.containerd.cri.v1.images".registry]` (containerd 2.x, version 3). Its keys
//   are those of containerd's Registry struct: config_path, mirrors, configs, headers, and the
//   deprecated `auths` (keyed by endpoint URL; like containerd, berth moves each entry to
//   configs.<host>.auth, replacing an auth given there).
//
//   # berth's own, shorter form
//   root = "/var/lib/berth"
//   log_level = "info"
//   [pull]
//     max_concurrent_downloads = 3
//     snapshotter = "overlayfs"
//   [registry]                              # same keys as containerd's section, plus:
//   [registry.configs."r.local"]
//     fallback = "always"
//
// Every key, with its values, default, containerd spelling and meaning, is documented once, in
// config_keys.cc (KeyDocs(), from which berth-config(5) is written); its test holds that table
// to this parser.
//
// Precedence. When both spellings appear in one file, the containerd sections are read first
// (version 1, then 2, then 3 spelling), then berth's [registry]; a later section wins per host:
// its mirrors."<host>" entry replaces the earlier one, its configs."<host>" entry replaces the
// earlier one as a whole (auth, tls and fallback together), its headers."<name>" replaces the
// earlier one, and a non-empty config_path replaces the earlier config_path.
//
// Like containerd, `config_path` (a directory of hosts.toml files, stored here as given and read
// by hosts_dir.h) cannot be combined with `mirrors` or with any `configs.<host>.tls`, because the
// hosts.toml files carry those; `configs.<host>.auth` may be combined with it.
//
// Strictness. Every key inside a table berth defines ([pull], [peers], [registry] and its
// sub-tables, the containerd registry section and its sub-tables) must be known: a misspelt key
// is an error that names it, so a typo never silently falls back to a default. Everything else
// in a containerd config.toml (other plugins, [grpc], [debug], `version`, …) is ignored.
//
// File format. A file with a top-level `plugins` table or `version` key is a containerd config
// (ConfigFormat::kContainerd). In such a file the top-level `root` and `state` are containerd's
// own directories and are ignored (berth keeps its defaults rather than writing into
// containerd's tree), and unknown top-level keys are ignored. In any other file
// (ConfigFormat::kBerth) the top level may hold only root, state, address, snapshotter_address,
// upstream_image_endpoint, metrics_address, log_level, [pull], [registry] and [peers], and
// anything else is an error.
//
// Paths. root and state must be absolute. config_path and the TLS files (ca_file, cert_file,
// key_file) are kept exactly as written, relative or not; they are resolved (and opened) by the
// code that uses them, not here.
//
// Errors. Every problem with the text is kInvalidArgument and reads
//   <file>:<line>:<column>: <key path> <problem>
// e.g. `/etc/berth/config.toml:12:1: registry.configs."r.local".tls.ca_file must be a string,
// got an integer`. An unknown key reads `<file>:<line>:<column>: unknown key <key path> (did you
// mean <key>?)` or lists the table's keys, and a TOML syntax error (duplicate keys included)
// reads `<file>:<line>:<column>: <toml++'s description>`. Key paths quote segments that are not
// bare TOML keys. The value of a secret (password, auth, identitytoken, header values) is never
// quoted in an error. (The problem follows the key path after a space, never after a colon:
// Error runs RedactSecrets(), which would blank the text after "…auth.password:".)
//
// Thread safety: the types are values; the functions are pure except LoadConfigFile, which
// reads one file.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/durability.h"
#include "berth/base/log.h"
#include "berth/base/redact.h"
#include "berth/base/result.h"

namespace berth::config {

// What a host does once all of its mirrors have failed.
enum class Fallback {
  kAlways,  // try the host itself (the default, as containerd does)
  kNever,   // fail the pull: the mirrors are the only allowed source
};

enum class SnapshotterKind { kOverlayfs, kNative, kErofs };
// Every snapshotter berth has, the default first.
inline constexpr SnapshotterKind kSnapshotterKinds[] = {
    SnapshotterKind::kOverlayfs, SnapshotterKind::kNative, SnapshotterKind::kErofs};

// Which spelling the file used; see "File format" above.
enum class ConfigFormat { kBerth, kContainerd };

// The config spellings: "always"/"never", "overlayfs"/"native"/"erofs", "berth"/"containerd".
// (Those of pull.sync are DurabilityName()'s, base/durability.h.)
std::string_view FallbackName(Fallback fallback);
std::string_view SnapshotterName(SnapshotterKind kind);
std::string_view ConfigFormatName(ConfigFormat format);

struct Mirror {
  // Endpoint URLs ("https://mirror.local:5000", optionally with a path), tried in order.
  // Each has an http:// or https:// scheme and a host.
  std::vector<std::string> endpoints;

  friend bool operator==(const Mirror&, const Mirror&) = default;
};

// Credentials for one registry host. Any combination may be set; the registry client decides
// which to use. Secrets print as <redacted>.
struct AuthConfig {
  std::string username;
  Secret password;
  // Base64 of "username:password" (Docker's config.json form). Checked to decode to a string
  // with a colon; not decoded into username/password here.
  Secret auth;
  // A refresh token for the registry's token service ("identitytoken" in the file).
  Secret identity_token;

  friend bool operator==(const AuthConfig&, const AuthConfig&) = default;
};

// TLS settings for one registry host. Paths are kept as written (relative paths stay relative)
// and are not opened here. cert_file and key_file are either both set or both empty.
struct TlsConfig {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  bool insecure_skip_verify = false;

  friend bool operator==(const TlsConfig&, const TlsConfig&) = default;
};

// Per-host settings, keyed by host ("r.local", "r.local:5000", "docker.io").
struct HostConfig {
  AuthConfig auth;
  TlsConfig tls;
  Fallback fallback = Fallback::kAlways;

  friend bool operator==(const HostConfig&, const HostConfig&) = default;
};

struct RegistryConfig {
  // Directory of hosts.toml files (containerd's certs.d layout), or several separated by ':';
  // empty when unset. Read with LoadHostsFileFromConfigPath() (hosts_dir.h).
  std::string config_path;
  // Host ("docker.io", or "*" for every host) → mirrors to try before the host.
  std::map<std::string, Mirror> mirrors;
  // Host → auth, TLS and fallback settings.
  std::map<std::string, HostConfig> configs;
  // Header name → values, sent to every registry. May carry credentials: never log the values.
  std::map<std::string, std::vector<std::string>> headers;

  friend bool operator==(const RegistryConfig&, const RegistryConfig&) = default;
};

inline constexpr uint64_t kDefaultMaxLayerSize = uint64_t{64} << 30;  // 64 GiB

// The free space a pull must leave on a filesystem holding berth's store (pull.min_free_space):
// the larger of `bytes` and `percent` % of the filesystem's size. The default, the larger of 5%
// and 1 GiB, keeps a pull from being the reason a node crosses kubelet's eviction threshold
// (15% free by default) by itself. The file sets one of the two ("2GiB" or "5%"); the other is
// then zero, and "0" asks for no reserve at all (only a full disk stops a pull).
struct MinFreeSpace {
  uint64_t bytes = uint64_t{1} << 30;
  double percent = 5.0;  // 0..90

  // The reserve on a filesystem of `filesystem_size` bytes.
  uint64_t ReserveFor(uint64_t filesystem_size) const;
  // As the file spells it: "5%", "2GiB", or both ("the larger of 5% and 1GiB").
  std::string ToString() const;

  friend bool operator==(const MinFreeSpace&, const MinFreeSpace&) = default;
};

// pull.layer_threads: the config file's spelling of unpack::UnpackOptions::LayerThreads (threads
// per layer being unpacked), with the same values in the same order. config sits below unpack
// in the module layering (unpack depends on pull, which depends on config), so it cannot name the
// unpacker's type; berth/stack maps one to the other.
enum class LayerThreads { kOne, kTwo, kThree, kAuto };

struct PullConfig {
  int max_concurrent_downloads = 3;
  SnapshotterKind snapshotter = SnapshotterKind::kOverlayfs;
  // Zero disables the no-progress watchdog.
  std::chrono::nanoseconds image_pull_progress_timeout = std::chrono::minutes(5);
  // Bytes per second; zero disables the throughput floor.
  uint64_t min_download_speed = 0;
  std::chrono::nanoseconds min_download_speed_window = std::chrono::seconds(30);
  // Node-wide download scheduler (pull/download_scheduler.h); zero means no limit.
  int max_concurrent_downloads_total = 16;
  int max_concurrent_downloads_per_registry = 8;
  // pull.sync: how durable a pull's writes are before each step counts as done.
  Durability sync = Durability::kLayer;
  LayerThreads layer_threads = LayerThreads::kAuto;
  uint64_t max_layer_size = kDefaultMaxLayerSize;
  MinFreeSpace min_free_space;
  // A layer inflating to more than this many times its compressed size (and past 1 MiB) is
  // refused as a decompression bomb: kInvalidArgument, since the layer is at fault whatever
  // the node's state and freeing space would not help. Zero disables the check.
  double max_inflate_ratio = 0;
  bool discard_unpacked_layers = false;
  // How long what a failed or interrupted pull fetched (blobs, partial downloads, unpacked
  // layers) is kept for a retry to reuse; zero frees it at the next garbage collection.
  std::chrono::seconds resume_window = std::chrono::hours(1);
  // Image references, as written (not normalized here), that garbage collection never removes.
  std::vector<std::string> pinned_images;

  friend bool operator==(const PullConfig&, const PullConfig&) = default;
};

// The most home peers a pull asks for one blob (peers.home_peers).
inline constexpr int kMaxHomePeers = 16;

// [peers]: peer sharing between berth nodes (issue 17; berth/peers). The serving side: the
// read-only OCI distribution endpoint berthd serves its verified content on, for the other berth
// nodes of the cluster (berth/peers/blob_server.h). TLS paths are kept as written and opened by
// berthd at start, as the registry's are.
struct PeersConfig {
  // host:port to listen on ("[v6]:port" for IPv6); empty: no peer endpoint.
  std::string listen;
  // Responses carrying content (GET of a blob or manifest) served at once; 1..1024.
  int max_concurrent_uploads = 8;
  // Bytes per second sent to peers, all connections together; zero: no limit.
  uint64_t max_upload_rate = 0;
  // The server's certificate chain and key (PEM); both or neither. Neither: plain HTTP.
  std::string tls_cert;
  std::string tls_key;
  // A CA (PEM) whose certificates clients must present (mutual TLS); needs tls_cert.
  std::string tls_client_ca;
  // Whether a blob a peer asks for that this node lacks is fetched from the registry the request
  // names (`ns`) and sent as it arrives (peers/arriving_blob.h); false: 404.
  bool fetch_missing = true;

  // The pulling side: who the peers are (peers/membership.h) and how many of a blob's home
  // peers a pull asks before the registry. The addresses are checked by peers::Membership when
  // berthd starts, not here.
  std::vector<std::string> static_peers;  // peers.static: "host:port", "[v6]:port"
  std::string dns_name;                   // A/AAAA records of the peers; "" for none
  uint16_t port = 0;                      // the port of the peers found in DNS
  std::string self;                       // this node's own address, left out of the members
  int home_peers = 2;                     // 0..kMaxHomePeers; 0 asks no peer
  std::string tls_ca;  // a CA (PEM) to verify peers with over https; "": plain http
  std::chrono::milliseconds refresh_interval = std::chrono::seconds(30);

  // Whether any peer may be found (a static list or a DNS name).
  bool enabled() const { return !static_peers.empty() || !dns_name.empty(); }

  friend bool operator==(const PeersConfig&, const PeersConfig&) = default;
};

struct Config {
  std::filesystem::path root = "/var/lib/berth";
  std::filesystem::path state = "/run/berth";
  std::string address = "unix:///run/berth/berth.sock";
  // Where berthd serves containerd's Snapshots API, as written: "" means nowhere, nullopt (not
  // set) means beside `address`; SnapshotterAddress() resolves it.
  std::optional<std::string> snapshotter_address;
  // Front mode's upstream CRI ImageService ("unix:///run/containerd/containerd.sock"); empty:
  // standalone mode.
  std::string upstream_image_endpoint;
  // Where berthd serves Prometheus metrics (host:port); empty: nowhere.
  std::string metrics_address;
  log::Level log_level = log::Level::kInfo;
  PullConfig pull;
  RegistryConfig registry;
  PeersConfig peers;
  ConfigFormat format = ConfigFormat::kBerth;

  friend bool operator==(const Config&, const Config&) = default;
};

// Where berthd serves containerd's Snapshots API: config.snapshotter_address when set ("" for
// nowhere), else "snapshotter.sock" in the directory of config.address's socket
// (unix:///run/berth/snapshotter.sock with the default address), so that daemons with sockets of
// their own also get a snapshotter socket of their own.
std::string SnapshotterAddress(const Config& config);

// The configuration used when no file is given: every default listed above, no registry
// settings.
Config DefaultConfig();

// Parses `toml_text`. `source_name` (usually the file's path) starts every error message.
// Keys not given keep their defaults. Returns kInvalidArgument for malformed TOML (including
// duplicate keys), an unknown key in a berth-defined table, a value of the wrong type, or a value
// out of range. Does not touch the filesystem.
Result<Config> ParseConfig(std::string_view toml_text, std::string_view source_name);

// Reads and parses the file at `path` (blocks on disk I/O). Returns kNotFound, naming the path,
// if the file does not exist; otherwise the errors of ReadFile() and ParseConfig(), the latter
// prefixed with the path.
Result<Config> LoadConfigFile(const std::filesystem::path& path);

}  // namespace berth::config
