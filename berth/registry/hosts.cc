#include "berth/registry/hosts.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "berth/config/hosts_dir.h"
#include "berth/registry/url.h"

namespace berth::registry {
namespace {

// "127.0.0.1:5000" → "127.0.0.1", "[::1]:5000" → "::1", "localhost" → "localhost".
std::string_view HostWithoutPort(std::string_view host) {
  if (host.starts_with('[')) {
    size_t close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(1, close - 1);
  }
  size_t colon = host.find(':');
  if (colon != std::string_view::npos && host.find(':', colon + 1) == std::string_view::npos) {
    return host.substr(0, colon);
  }
  return host;
}

Result<void> CheckReadable(const std::string& path, std::string_view what, std::string_view host) {
  if (::access(path.c_str(), R_OK) != 0) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("registry {}: {} \"{}\" cannot be read: {}", host, what, path,
                            std::strerror(errno)));
  }
  return Ok();
}

Result<void> CheckTlsFiles(const TlsOptions& options, std::string_view host) {
  for (const std::string& ca_file : options.ca_files) {
    BERTH_RETURN_IF_ERROR(CheckReadable(ca_file, "CA file", host));
  }
  if (!options.cert_file.empty()) {
    BERTH_RETURN_IF_ERROR(CheckReadable(options.cert_file, "client certificate", host));
  }
  if (!options.key_file.empty()) {
    BERTH_RETURN_IF_ERROR(CheckReadable(options.key_file, "client key", host));
  }
  return Ok();
}

Result<TlsOptions> TlsFromConfig(const config::RegistryConfig& registry, const std::string& host,
                                 std::string_view scheme) {
  auto it = registry.configs.find(host);
  if (it == registry.configs.end()) return TlsOptions{};
  const config::TlsConfig& tls = it->second.tls;
  TlsOptions options{.cert_file = tls.cert_file,
                     .key_file = tls.key_file,
                     .insecure_skip_verify = tls.insecure_skip_verify};
  if (!tls.ca_file.empty()) options.ca_files.push_back(tls.ca_file);
  if (options == TlsOptions{}) return options;
  if (scheme != "https") {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("registry {}: TLS settings are configured for an endpoint that is not "
                            "https; use an https:// endpoint or remove configs.\"{}\".tls",
                            host, host));
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    const std::string& given = options.cert_file.empty() ? options.key_file : options.cert_file;
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("registry {}: {} is given without its {}; set both cert_file and "
                            "key_file",
                            host, given, options.cert_file.empty() ? "cert_file" : "key_file"));
  }
  BERTH_RETURN_IF_ERROR(CheckTlsFiles(options, host));
  return options;
}

bool HasTlsConfig(const config::RegistryConfig& registry, const std::string& host) {
  auto it = registry.configs.find(host);
  if (it == registry.configs.end()) return false;
  const config::TlsConfig& tls = it->second.tls;
  return !tls.ca_file.empty() || !tls.cert_file.empty() || !tls.key_file.empty() ||
         tls.insecure_skip_verify;
}

// "127.0.0.1:5000" → "5000", "[::1]:443" → "443", "localhost" and "::1" → "".
std::string_view PortOf(std::string_view host) {
  if (host.starts_with('[')) {
    size_t close = host.find("]:");
    return close == std::string_view::npos ? std::string_view() : host.substr(close + 2);
  }
  size_t colon = host.find(':');
  if (colon == std::string_view::npos || host.find(':', colon + 1) != std::string_view::npos) {
    return {};
  }
  return host.substr(colon + 1);
}

// How an endpoint written without a scheme is reached.
struct SchemeChoice {
  std::string scheme;
  PlainHttpFallback fallback = PlainHttpFallback::kNever;
};

// https, except on a loopback host without TLS settings, where containerd's rule for localhost
// applies (core/remotes/docker/config/hosts.go, ConfigureHosts): port 80 is plain http; no port
// or 443 is https; any other port is ambiguous, so https first, then plain http when the server
// turns out not to speak TLS. TLS settings configured for a loopback host mean https only.
SchemeChoice SchemeFor(const config::RegistryConfig& registry, const std::string& host) {
  if (!IsLoopbackHost(host) || HasTlsConfig(registry, host)) return {.scheme = "https"};
  std::string_view port = PortOf(host);
  if (port == "80") return {.scheme = "http"};
  if (port.empty() || port == "443") return {.scheme = "https"};
  return {.scheme = "https", .fallback = PlainHttpFallback::kWhenServerIsNotTls};
}

// Splits "/path?query" into the endpoint's path and query.
void SetPathAndQuery(const std::string& path_and_query, RegistryEndpoint& endpoint) {
  size_t question = path_and_query.find('?');
  endpoint.path = path_and_query.substr(0, question);
  endpoint.query = question == std::string::npos ? "" : path_and_query.substr(question + 1);
}

Result<RegistryEndpoint> EndpointFromUrl(const config::RegistryConfig& registry,
                                         std::string_view text, bool is_mirror) {
  std::string with_scheme(text);
  SchemeChoice choice{.scheme = "https"};
  if (with_scheme.find("://") == std::string::npos) {
    size_t host_end = with_scheme.find_first_of("/?");
    choice = SchemeFor(registry, with_scheme.substr(0, host_end));
    with_scheme = choice.scheme + "://" + with_scheme;
  }
  Result<Url> url = ParseUrl(with_scheme);
  if (!url) {
    return Fail(std::move(url).error().WithContext(fmt::format("registry endpoint \"{}\"", text)));
  }
  RegistryEndpoint endpoint;
  endpoint.scheme = url->scheme;
  endpoint.host = url->host;
  SetPathAndQuery(url->path, endpoint);
  if (endpoint.path == "/") endpoint.path = "/v2";
  while (endpoint.path.size() > 1 && endpoint.path.back() == '/') endpoint.path.pop_back();
  endpoint.is_mirror = is_mirror;
  endpoint.plain_http_fallback = choice.fallback;
  BERTH_ASSIGN_OR_RETURN(endpoint.tls, TlsFromConfig(registry, endpoint.host, endpoint.scheme));
  for (const auto& [name, values] : registry.headers) {
    for (const std::string& value : values) endpoint.headers.emplace_back(name, value);
  }
  return endpoint;
}

// One endpoint of a hosts.toml (a mirror or the server).
Result<RegistryEndpoint> EndpointFromHostsEntry(const config::RegistryConfig& registry,
                                                const config::HostsFileEntry& entry, bool is_mirror,
                                                bool server_explicit, std::string_view domain) {
  std::string text = entry.url;
  // An unconfigured server is the registry's default host, without a scheme: the plain rules
  // choose it (for a loopback host, containerd's localhost rule).
  if (!is_mirror && !server_explicit) text = DefaultHostFor(domain);
  BERTH_ASSIGN_OR_RETURN(RegistryEndpoint endpoint, EndpointFromUrl(registry, text, is_mirror));
  if (!entry.override_path && !endpoint.path.ends_with("/v2")) {
    endpoint.path = endpoint.path == "/v2" ? "/v2" : endpoint.path + "/v2";
  }
  if (entry.override_path) {
    Result<Url> url =
        ParseUrl(entry.url.find("://") == std::string::npos ? "https://" + entry.url : entry.url);
    if (url) {
      SetPathAndQuery(url->path, endpoint);
      if (endpoint.path == "/") endpoint.path = "";
    }
  }
  endpoint.capabilities = 0;
  if (entry.Can(config::kHostPull)) endpoint.capabilities |= kCapabilityPull;
  if (entry.Can(config::kHostResolve)) endpoint.capabilities |= kCapabilityResolve;
  if (entry.Can(config::kHostPush)) endpoint.capabilities |= kCapabilityPush;
  TlsOptions tls = endpoint.tls;
  tls.ca_files.insert(tls.ca_files.end(), entry.ca_files.begin(), entry.ca_files.end());
  if (!entry.client_pairs.empty()) {
    tls.cert_file = entry.client_pairs.front().first;
    tls.key_file = entry.client_pairs.front().second;
  }
  if (entry.skip_verify) tls.insecure_skip_verify = *entry.skip_verify;
  if (!(tls == TlsOptions{}) && endpoint.scheme != "https") {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("registry {}: hosts.toml gives TLS settings for the http endpoint {}",
                            domain, entry.url));
  }
  BERTH_RETURN_IF_ERROR(CheckTlsFiles(tls, endpoint.host));
  // TLS settings for a loopback server mean https only there, as they do in configs.<host>.tls.
  if (!(tls == TlsOptions{})) endpoint.plain_http_fallback = PlainHttpFallback::kNever;
  endpoint.tls = std::move(tls);
  for (const auto& [name, values] : entry.headers) {
    for (const std::string& value : values) endpoint.headers.emplace_back(name, value);
  }
  return endpoint;
}

Result<std::vector<RegistryEndpoint>> EndpointsFromHostsFile(const config::RegistryConfig& registry,
                                                             const config::HostsFile& hosts,
                                                             std::string_view domain,
                                                             config::Fallback fallback) {
  std::vector<RegistryEndpoint> endpoints;
  std::string where = fmt::format("hosts file {}", hosts.source.string());
  for (const config::HostsFileEntry& mirror : hosts.mirrors) {
    BERTH_ASSIGN_OR_RETURN(
        RegistryEndpoint endpoint,
        WithContext(EndpointFromHostsEntry(registry, mirror, true, true, domain), where));
    endpoints.push_back(std::move(endpoint));
  }
  if (fallback == config::Fallback::kAlways) {
    BERTH_ASSIGN_OR_RETURN(RegistryEndpoint server,
                           WithContext(EndpointFromHostsEntry(registry, hosts.server, false,
                                                              hosts.server_explicit, domain),
                                       where));
    endpoints.push_back(std::move(server));
  }
  return endpoints;
}

}  // namespace

std::string DefaultHostFor(std::string_view domain) {
  if (domain == "docker.io") return "registry-1.docker.io";
  return std::string(domain);
}

bool IsLoopbackHost(std::string_view host) {
  std::string bare(HostWithoutPort(host));
  if (bare == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, bare.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, bare.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;  // ::ffff:127.x.y.z
  }
  return false;
}

std::string DefaultSchemeFor(std::string_view host) {
  return SchemeFor(config::RegistryConfig{}, std::string(host)).scheme;
}

std::string RegistryEndpoint::UrlFor(std::string_view relative_path) const {
  std::string url = BaseUrl() + std::string(relative_path);
  std::string full_query = query;
  if (!mirror_of.empty()) {
    if (!full_query.empty()) full_query += '&';
    full_query += "ns=" + QueryEscape(mirror_of);
  }
  return full_query.empty() ? url : url + "?" + full_query;
}

Result<std::vector<RegistryEndpoint>> ResolveEndpoints(const config::RegistryConfig& registry,
                                                       std::string_view domain) {
  std::string default_host = DefaultHostFor(domain);
  const config::Mirror* mirror = nullptr;
  if (auto it = registry.mirrors.find(std::string(domain)); it != registry.mirrors.end()) {
    mirror = &it->second;
  } else if (auto any = registry.mirrors.find("*"); any != registry.mirrors.end()) {
    mirror = &any->second;
  }
  config::Fallback fallback = config::Fallback::kAlways;
  if (auto it = registry.configs.find(std::string(domain)); it != registry.configs.end()) {
    fallback = it->second.fallback;
  }

  std::vector<RegistryEndpoint> endpoints;
  bool default_listed = false;
  if (!registry.config_path.empty()) {
    BERTH_ASSIGN_OR_RETURN(std::optional<config::HostsFile> hosts,
                           config::LoadHostsFileFromConfigPath(registry.config_path, domain));
    if (hosts) {
      BERTH_ASSIGN_OR_RETURN(endpoints, EndpointsFromHostsFile(registry, *hosts, domain, fallback));
      default_listed = true;
      mirror = nullptr;
    }
  }
  if (mirror != nullptr) {
    for (const std::string& text : mirror->endpoints) {
      BERTH_ASSIGN_OR_RETURN(RegistryEndpoint endpoint, EndpointFromUrl(registry, text, true));
      if (endpoint.host == default_host || endpoint.host == domain) {
        endpoint.is_mirror = false;
        default_listed = true;
      }
      endpoints.push_back(std::move(endpoint));
    }
  }
  if (!default_listed && fallback == config::Fallback::kAlways) {
    BERTH_ASSIGN_OR_RETURN(RegistryEndpoint endpoint,
                           EndpointFromUrl(registry, default_host, false));
    endpoints.push_back(std::move(endpoint));
  }
  // containerd's convention: a request to any host but the registry's own says which registry
  // it is for, so that a pull-through cache knows the upstream.
  for (RegistryEndpoint& endpoint : endpoints) {
    bool upstream = endpoint.host == domain || endpoint.host == default_host;
    endpoint.mirror_of = upstream ? "" : std::string(domain);
  }
  if (endpoints.empty()) {
    return Fail(ErrorCode::kFailedPrecondition,
                fmt::format("registry {} has fallback = \"never\" but no mirror is configured for "
                            "it; add mirrors.\"{}\".endpoint or allow the fallback",
                            domain, domain));
  }
  return endpoints;
}

TlsOptions TlsForHost(const config::RegistryConfig& registry, std::string_view host) {
  Result<TlsOptions> tls = TlsFromConfig(registry, std::string(host), "https");
  return tls ? *tls : TlsOptions{};
}

}  // namespace berth::registry
