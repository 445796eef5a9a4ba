// File: berth/registry/hosts.h
//
// Which endpoints serve a registry host, and how to talk to each: containerd's `registryHosts`
// with the seed's rules, decided once per pull from the config.
//
//   - Endpoints are the configured mirrors of the host, else those of "*", in order; then the
//     host itself (its default endpoint) unless a mirror already names that host, or the host's
//     `fallback` is "never".
//   - docker.io is served at registry-1.docker.io.
//   - An endpoint without a scheme is https. On a loopback host (localhost, 127.0.0.0/8, ::1)
//     without TLS settings, containerd's localhost rule applies instead: port 80 is plain http,
//     no port or 443 is https, and any other port is https first with a fallback to plain http
//     when the server does not speak TLS (PlainHttpFallback; the client remembers the outcome
//     per endpoint). TLS settings configured for a loopback host mean https only there. An
//     endpoint written with a scheme (mirrors, hosts.toml) is used as written. An endpoint
//     without a path gets "/v2"; a query in its URL is kept and sent with every request.
//   - Every endpoint on another host than the registry's own carries `mirror_of`, so each of its
//     requests says `ns=<registry domain>` (see RegistryEndpoint::UrlFor).
//   - TLS comes from `configs.<endpoint host>.tls`: the CA file is added to the system pool, a
//     client certificate needs its key. TLS settings on an explicitly http endpoint are an
//     error, as in containerd.
//   - With `config_path` (containerd's certs.d layout), a hosts.toml found for the host decides
//     instead: its [host."…"] mirrors in file order with their capabilities, CA files, client
//     certificates, skip_verify, headers and override_path, then its `server` (dropped when
//     fallback = "never"). "/v2" is appended to a URL path that does not end in it unless
//     override_path is set. Without a hosts.toml for the host, the rules above apply.
//
// Thread safety: pure functions over values.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "berth/config/config.h"
#include "berth/registry/http.h"

namespace berth::registry {

enum Capability : unsigned {
  kCapabilityPull = 1,     // fetch blobs and manifests by digest
  kCapabilityResolve = 2,  // resolve a tag to a digest
  kCapabilityPush = 4,
};

struct RegistryEndpoint {
  std::string scheme;  // "http" or "https"
  std::string host;    // "mirror.local:5000"; the key for TLS, credentials and auth state
  std::string path;    // "/v2" unless configured otherwise
  unsigned capabilities = kCapabilityPull | kCapabilityResolve;
  TlsOptions tls;
  std::string query;  // the configured URL's query ("key=abc"), sent with every request
  HeaderList headers;
  bool is_mirror = false;
  // For an endpoint on another host than the registry's own (a mirror): the registry's domain
  // ("docker.io"), sent as `ns=<domain>` with every request, as containerd does, so that a
  // pull-through cache knows which upstream a path belongs to. Empty for the registry itself.
  std::string mirror_of;
  // kWhenServerIsNotTls for an https endpoint on a loopback host written without a scheme (see
  // the rules above): requests to it fall back to plain http when the server does not speak TLS.
  PlainHttpFallback plain_http_fallback = PlainHttpFallback::kNever;
  // A berth peer (berth/peers), asked for blobs by digest before the registry's endpoints (see
  // Session::blob_peers), never for manifests. A peer is never sent credentials: no
  // Authorization header and no answer to its 401. It is asked once per blob (no retries), and
  // a peer that fails is given up on for that blob (RegistryObserver::PeerGivenUp).
  bool is_peer = false;

  // "https://mirror.local:5000/v2" (without the query)
  std::string BaseUrl() const { return scheme + "://" + host + path; }
  // The URL of `relative_path` ("/library/busybox/manifests/latest") on this endpoint, with the
  // endpoint's query and then ns=<mirror_of> when set:
  // "https://mirror.local:5000/v2/library/busybox/manifests/latest?key=abc&ns=docker.io".
  std::string UrlFor(std::string_view relative_path) const;
  bool Can(Capability capability) const { return (capabilities & capability) != 0; }
};

// The host a registry domain is served at: "docker.io" → "registry-1.docker.io".
std::string DefaultHostFor(std::string_view domain);

// True for "localhost" and every loopback address (127.0.0.0/8, ::1, ::ffff:127.x.y.z), with
// or without a port: containerd's localhost.
bool IsLoopbackHost(std::string_view host);

// The scheme of `host` written without one and without TLS settings: "http" for a loopback
// host on port 80, else "https".
std::string DefaultSchemeFor(std::string_view host);

// The endpoints serving `domain` (a reference's domain, e.g. "docker.io", "127.0.0.1:5000"),
// in the order to try them. kInvalidArgument for a malformed endpoint URL or TLS settings that
// do not fit (naming the host and the file); kFailedPrecondition when fallback = "never" and no
// mirror is configured.
Result<std::vector<RegistryEndpoint>> ResolveEndpoints(const config::RegistryConfig& registry,
                                                       std::string_view domain);

// The TLS options configured for `host`, for hosts reached other than as an endpoint (token
// realms, redirect targets). Empty when none are configured.
TlsOptions TlsForHost(const config::RegistryConfig& registry, std::string_view host);

}  // namespace berth::registry
