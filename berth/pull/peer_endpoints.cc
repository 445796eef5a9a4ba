#include "berth/pull/peer_endpoints.h"

#include <algorithm>

#include "berth/peers/rendezvous.h"

namespace berth::pull {
namespace {

// The homes of `digest` to ask, in order (see the header): those ranked above this node's own
// address when it is known.
std::vector<std::string> HomesToAsk(const Digest& digest, std::span<const std::string> members,
                                    std::string_view self, size_t count) {
  if (self.empty()) return peers::HomePeers(digest, members, count);
  std::vector<std::string> everyone(members.begin(), members.end());
  everyone.emplace_back(self);
  std::vector<std::string> homes = peers::HomePeers(digest, everyone, everyone.size());
  homes.erase(std::find(homes.begin(), homes.end(), self), homes.end());
  if (homes.size() > count) homes.resize(count);
  return homes;
}

}  // namespace

std::vector<registry::RegistryEndpoint> HomePeerEndpoints(const Digest& digest,
                                                          std::span<const std::string> members,
                                                          std::string_view self,
                                                          const config::PeersConfig& peers,
                                                          std::string_view registry_domain) {
  std::vector<registry::RegistryEndpoint> endpoints;
  if (peers.home_peers <= 0) return endpoints;
  for (std::string& home :
       HomesToAsk(digest, members, self, static_cast<size_t>(peers.home_peers))) {
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
