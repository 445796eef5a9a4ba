#include "berth/pull/peer_endpoints.h"

#include "berth/peers/rendezvous.h"

namespace berth::pull {

std::vector<registry::RegistryEndpoint> HomePeerEndpoints(const Digest& digest,
                                                          std::span<const std::string> members,
                                                          const config::PeersConfig& peers,
                                                          std::string_view registry_domain) {
  std::vector<registry::RegistryEndpoint> endpoints;
  if (peers.home_peers <= 0) return endpoints;
  for (std::string& home :
       peers::HomePeers(digest, members, static_cast<size_t>(peers.home_peers))) {
    registry::RegistryEndpoint endpoint{.scheme = peers.tls_ca.empty() ? "http" : "https",
                                        .host = std::move(home),
                                        .path = "/v2",
                                        .capabilities = registry::kCapabilityPull,
                                        .mirror_of = std::string(registry_domain),
                                        .is_peer = true};
    if (!peers.tls_ca.empty()) endpoint.tls.ca_files = {peers.tls_ca};
    endpoints.push_back(std::move(endpoint));
  }
  return endpoints;
}

}  // namespace berth::pull
