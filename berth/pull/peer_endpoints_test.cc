#include "berth/pull/peer_endpoints.h"

#include <gtest/gtest.h>

#include "berth/peers/rendezvous.h"

namespace berth::pull {
namespace {

const std::vector<std::string> kMembers = {"10.0.0.2:5050", "10.0.0.3:5050", "10.0.0.4:5050",
                                           "[fd00::5]:5050"};

TEST(HomePeerEndpointsTest, TheHomePeersInRendezvousOrderAsBlobOnlyEndpointsWithNs) {
  const Digest digest = Digest::Sha256Of("a layer");
  const config::PeersConfig peers{.home_peers = 2};
  std::vector<registry::RegistryEndpoint> endpoints =
      HomePeerEndpoints(digest, kMembers, "", peers, "docker.io");
  const std::vector<std::string> homes = peers::HomePeers(digest, kMembers, 2);
  ASSERT_EQ(endpoints.size(), 2u);
  for (size_t i = 0; i < endpoints.size(); ++i) {
    EXPECT_EQ(endpoints[i].host, homes[i]);
    EXPECT_TRUE(endpoints[i].is_peer);
    EXPECT_TRUE(endpoints[i].Can(registry::kCapabilityPull));
    EXPECT_FALSE(endpoints[i].Can(registry::kCapabilityResolve));
  }
  EXPECT_EQ(
      endpoints[0].UrlFor("/library/busybox/blobs/" + digest.ToString()),
      "http://" + homes[0] + "/v2/library/busybox/blobs/" + digest.ToString() + "?ns=docker.io");
}

TEST(HomePeerEndpointsTest, EveryNodeAsksTheSamePeersWhateverOrderItKnowsThemIn) {
  const Digest digest = Digest::Sha256Of("another layer");
  std::vector<std::string> reversed(kMembers.rbegin(), kMembers.rend());
  const config::PeersConfig peers{.home_peers = 3};
  auto hosts = [](const std::vector<registry::RegistryEndpoint>& endpoints) {
    std::vector<std::string> out;
    for (const auto& endpoint : endpoints) out.push_back(endpoint.host);
    return out;
  };
  EXPECT_EQ(hosts(HomePeerEndpoints(digest, kMembers, "", peers, "r.local")),
            hosts(HomePeerEndpoints(digest, reversed, "", peers, "r.local")));
}

TEST(HomePeerEndpointsTest, ANodeThatKnowsItsAddressAsksOnlyTheHomesRankedAboveIt) {
  // Five nodes; for each digest, every node ranks all five the same way.
  const std::vector<std::string> nodes = {"10.0.0.1:5050", "10.0.0.2:5050", "10.0.0.3:5050",
                                          "10.0.0.4:5050", "10.0.0.5:5050"};
  for (const char* blob : {"layer-1", "layer-2", "config"}) {
    const Digest digest = Digest::Sha256Of(blob);
    const std::vector<std::string> ranking = peers::HomePeers(digest, nodes, nodes.size());
    for (size_t rank = 0; rank < ranking.size(); ++rank) {
      std::vector<std::string> others;
      for (const std::string& node : nodes) {
        if (node != ranking[rank]) others.push_back(node);
      }
      const config::PeersConfig peers{.home_peers = 2};
      std::vector<std::string> asked;
      for (const auto& endpoint :
           HomePeerEndpoints(digest, others, ranking[rank], peers, "r.local")) {
        asked.push_back(endpoint.host);
      }
      // The first home asks nobody (it fetches from the registry); the others ask the homes
      // above them, the first home first, at most home_peers of them.
      std::vector<std::string> expected(
          ranking.begin(),
          ranking.begin() + static_cast<long>(std::min<size_t>(rank, peers.home_peers)));
      EXPECT_EQ(asked, expected) << blob << " rank " << rank;
    }
  }
}

TEST(HomePeerEndpointsTest, HttpsWithTheClusterCaWhenOneIsConfigured) {
  const config::PeersConfig peers{.home_peers = 1, .tls_ca = "/etc/berth/peers/ca.pem"};
  auto endpoints = HomePeerEndpoints(Digest::Sha256Of("x"), kMembers, "", peers, "r.local");
  ASSERT_EQ(endpoints.size(), 1u);
  EXPECT_EQ(endpoints[0].scheme, "https");
  EXPECT_EQ(endpoints[0].tls.ca_files, std::vector<std::string>{"/etc/berth/peers/ca.pem"});
}

TEST(HomePeerEndpointsTest, NoPeerWithoutMembersOrWhenAskedForNone) {
  const Digest digest = Digest::Sha256Of("x");
  EXPECT_TRUE(HomePeerEndpoints(digest, {}, "", config::PeersConfig{}, "r.local").empty());
  EXPECT_TRUE(
      HomePeerEndpoints(digest, kMembers, "", config::PeersConfig{.home_peers = 0}, "r.local")
          .empty());
  // More home peers asked for than there are members: every member, once.
  EXPECT_EQ(
      HomePeerEndpoints(digest, kMembers, "", config::PeersConfig{.home_peers = 16}, "r.local")
          .size(),
      kMembers.size());
}

}  // namespace
}  // namespace berth::pull
