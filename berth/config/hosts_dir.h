// File: berth/config/hosts_dir.h
//
// containerd's per-host registry directory: the `config_path` of the registry section
// (RegistryConfig::config_path) names a directory with one sub-directory per registry host, each
// holding a hosts.toml that lists the mirrors to try for that host and how to reach each of them
// (TLS files, headers, capabilities). This file parses those files and finds the right one for a
// host; it opens no connection and reads no certificate. The registry module turns a HostsFile
// into endpoints.
//
//   /etc/containerd/certs.d/
//     docker.io/hosts.toml
//     127.0.0.1_5000_/hosts.toml      (a host with a port; a "127.0.0.1:5000" directory works too)
//     _default/hosts.toml             (hosts without a directory of their own)
//
// A hosts.toml (containerd docs/hosts.md):
//
//   server = "https://registry-1.docker.io"   # the host's own endpoint, tried after every mirror
//   capabilities = ["pull", "resolve"]        # what the server may be used for
//   ca = "/etc/certs/ca.pem"                  # CA file(s) trusted in addition to the system pool:
//                                             #   "file" or ["file", …]
//   client = "/etc/certs/client.pem"          # client certificate(s): "cert+key.pem",
//                                             #   ["cert+key.pem", …], or [["cert", "key"], …]
//   skip_verify = false                       # do not verify the server's certificate
//   override_path = false                     # see "URLs and /v2" below
//   dial_timeout = "5s"                       # Go duration; how long a TCP connect may take
//   [header]
//     x-custom = "v"                          # header name → "value" or ["value", …]
//
//   [host."https://mirror.local:5000"]        # one table per mirror, tried in FILE ORDER
//     capabilities = ["pull", "resolve"]
//     ca = "ca.pem"                           # relative: to this hosts.toml's directory
//     client = [["client.cert", "client.key"]]
//     skip_verify = true
//     override_path = true
//     dial_timeout = "2s"
//     [host."https://mirror.local:5000".header]
//       x-foo = ["a", "b"]
//
// Semantics, as in containerd:
//   - Mirrors are tried in the order their [host."…"] tables first appear in the file (not in
//     key order), then the server. `server` defaults to https://<host>, except docker.io, which
//     is served at https://registry-1.docker.io; HostsFile::server_explicit says whether the file
//     set it, so a consumer may apply its own default (containerd uses http for localhost with a
//     port other than 443) when it did not.
//   - Capabilities: "pull" (fetch manifests and blobs by digest), "resolve" (turn a tag into a
//     digest), "push". Matched case-insensitively. A missing or empty list means all three.
//     A mirror that only has "pull" is only asked for content by digest, which is how a mirror
//     that cannot be trusted for tags is configured.
//   - URLs: an http:// or https:// URL with a host and optionally a port and a path. A URL
//     written without a scheme gets https:// (containerd does the same); any other scheme,
//     credentials in the URL ("user@host"), a query or a fragment is an error.
//   - URLs and /v2: the registry API lives under /v2. When override_path is false (the
//     default), the consumer appends "/v2" to the URL's path unless it already ends in "/v2"
//     ("https://m.local/cache" → "https://m.local/cache/v2"); when true, the path is used as
//     the API root as written (for registries that serve the API somewhere else). This file
//     keeps the URL as written and leaves that step to the consumer.
//   - ca and client paths that are relative are resolved against the directory holding the
//     hosts.toml (the directory part of `source_name` for ParseHostsFile), as containerd's
//     makeAbsPath does; absolute paths are kept as written. The files are not opened here.
//   - skip_verify is tri-state: unset means "the consumer's default", not false.
//   - Header values may be credentials: they are never quoted in errors; never log them.
//
// Differences from containerd, on purpose:
//   - Strict: an unknown key, a value of the wrong type or shape, or an unknown capability is an
//     error naming the key path and file:line:column. containerd logs a broken hosts.toml and
//     carries on as if it had no mirrors; berth refuses, so a typo never silently bypasses a
//     mirror.
//   - A host directory without a hosts.toml (or with an empty one) yields nullopt here.
//     containerd then reads Docker-style certificate files from that directory (*.crt as CAs,
//     *.cert with a matching *.key as client pairs); FindHostDirectory gives the directory for a
//     consumer that wants to do the same.
//
// Errors. Every problem with the text is kInvalidArgument and reads
//   <file>:<line>:<column>: <key path> <problem>
// e.g. `/etc/containerd/certs.d/docker.io/hosts.toml:4:3: host."https://m.local".capabilities[1]
// must be one of "pull", "resolve", "push"; got "pul"`, in the style of config.h.
//
// Thread safety: the types are values; ParseHostsFile is pure; the Load and Find functions read
// the filesystem (blocking) and may run concurrently.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/base/result.h"

namespace berth::config {

// What an endpoint may be used for; HostsFileEntry::capabilities is a bitwise OR of these.
enum HostCapability : unsigned {
  kHostPull = 1,     // fetch manifests and blobs by digest
  kHostResolve = 2,  // resolve a tag to a digest
  kHostPush = 4,     // upload
};
inline constexpr unsigned kHostAllCapabilities = kHostPull | kHostResolve | kHostPush;

// One endpoint of a hosts.toml: a mirror ([host."<url>"]) or the server (the top level).
struct HostsFileEntry {
  // As written, e.g. "https://mirror.local:5000/v2/x", with "https://" prepended when the file
  // gave no scheme. Always http:// or https:// followed by a non-empty host.
  std::string url;
  // Bitwise OR of HostCapability; kHostAllCapabilities unless the file lists some.
  unsigned capabilities = kHostAllCapabilities;
  // CA certificate files, in the order written; relative paths already resolved (see above).
  std::vector<std::string> ca_files;
  // Client certificate files as (cert, key) pairs, in the order written; key is empty when the
  // cert file is a combined PEM holding the key too. Paths resolved like ca_files.
  std::vector<std::pair<std::string, std::string>> client_pairs;
  // Unset when the file does not say.
  std::optional<bool> skip_verify;
  // Header name (as written) → values. May hold credentials: never log the values.
  std::map<std::string, std::vector<std::string>> headers;
  // True: the URL's path is the API root as is. False: the consumer appends "/v2" (see above).
  bool override_path = false;
  // Unset when the file does not say; zero means no limit beyond the system's.
  std::optional<std::chrono::nanoseconds> dial_timeout;

  bool Can(HostCapability capability) const { return (capabilities & capability) != 0; }

  friend bool operator==(const HostsFileEntry&, const HostsFileEntry&) = default;
};

struct HostsFile {
  // The file read (LoadHostsFile), or the `source_name` given to ParseHostsFile.
  std::filesystem::path source;
  // The host's own endpoint: `server` and the top-level keys. url is the default (see above)
  // when the file has no `server`.
  HostsFileEntry server;
  bool server_explicit = false;
  // [host."<url>"] tables, in the order they first appear in the file.
  std::vector<HostsFileEntry> mirrors;

  friend bool operator==(const HostsFile&, const HostsFile&) = default;
};

// Parses the text of a hosts.toml for registry `host` ("docker.io", "127.0.0.1:5000"), which
// only decides the default server URL. `source_name` (usually the file's path) starts every
// error message, and its directory part is the base for relative ca/client paths (when it has
// none, relative paths stay relative). Returns kInvalidArgument for malformed TOML, an unknown
// key, a value of the wrong type or shape, an unknown capability, a malformed URL or duration,
// or an empty `host`. Does not touch the filesystem.
Result<HostsFile> ParseHostsFile(std::string_view toml_text, std::string_view source_name,
                                 std::string_view host);

// The directories of `config_path` that may configure `host`, in the order containerd tries
// them on Linux: "<host with ':port' written as '_port_'>" (only when the host has a port, e.g.
// "127.0.0.1_5000_"), "<host>" as written ("127.0.0.1:5000"), then "_default".
// REQUIRES: `host` is a valid host name (see FindHostDirectory); not checked here.
std::vector<std::filesystem::path> HostDirectoryCandidates(const std::filesystem::path& config_path,
                                                           std::string_view host);

// The first of HostDirectoryCandidates() that exists, or nullopt when none does (including when
// `config_path` itself does not exist). Like containerd, the first existing directory wins even
// if it holds no hosts.toml. Returns kInvalidArgument when `host` is empty or could escape
// `config_path` (contains '/', NUL or whitespace, or is "." or ".."), or when `config_path` or a
// candidate exists but is not a directory; the errors of stat (kPermissionDenied, kInternal)
// otherwise. Blocks on disk I/O.
Result<std::optional<std::filesystem::path>> FindHostDirectory(
    const std::filesystem::path& config_path, std::string_view host);

// Finds the directory for `host` (FindHostDirectory) and parses its hosts.toml
// (ParseHostsFile, with the file's path as the source, so relative ca/client paths resolve
// against that directory). So <config_path>/<host>/hosts.toml is used when that directory
// exists, else <config_path>/_default/hosts.toml. Returns nullopt when no candidate directory
// exists, or when the chosen one holds no hosts.toml or an empty one (see "Differences" above).
// Errors: those of FindHostDirectory, of reading the file (kPermissionDenied, kResourceExhausted
// above 1 MiB, kInternal; with the path as context) and of ParseHostsFile. Blocks on disk I/O.
Result<std::optional<HostsFile>> LoadHostsFile(const std::filesystem::path& config_path,
                                               std::string_view host);

// LoadHostsFile over a `config_path` setting as containerd's CRI plugin reads it: a list of
// roots separated by ':' ("/etc/containerd/certs.d:/etc/docker/certs.d"; empty elements are
// skipped). The first root in which a candidate directory exists is used, even if a later root
// has a more specific one. Returns nullopt when `config_path` is empty or no root has one.
Result<std::optional<HostsFile>> LoadHostsFileFromConfigPath(std::string_view config_path,
                                                             std::string_view host);

}  // namespace berth::config
