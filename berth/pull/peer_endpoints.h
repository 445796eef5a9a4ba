// File: berth/pull/peer_endpoints.h
//
// The peers a pull asks for one blob before the registry (issue 17): the blob's home peers
// (peers/rendezvous.h) among the current members, as blob-only registry endpoints
// (RegistryEndpoint::is_peer) for the registry client's walk (registry/client.h).
//
//   GET <scheme>://<peer>/v2/<repository>/blobs/<digest>?ns=<registry domain>
//
// as containerd asks a mirror, so a peer knows which registry a blob belongs to.
//
// Asking goes one way. When the node knows its own address (`self`: peers.self, or found by
// the membership among the members, peers/membership.h), it ranks itself among
// the members too and asks only the homes ranked above itself: a blob's first home asks no peer
// and fetches it from the registry, its second home asks only the first, and so on — so two
// nodes never ask each other for one blob and wait for each other, and the nodes pulling a blob
// at once all end up at its first home, which fetches it once (pull/puller.h). Without `self`
// the first peers.home_peers homes among the members are asked.
//
// The scheme is
// https with peers.tls_ca as the CA when one is configured, else plain http: a peer's bytes are
// verified against the digest either way; TLS keeps what is pulled private on the wire.
//
// Thread safety: a pure function over values.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "berth/config/config.h"
#include "berth/digest/digest.h"
#include "berth/registry/hosts.h"

namespace berth::pull {

// The endpoints of the first `peers.home_peers` home peers of `digest` among `members` (peer
// addresses, "host:port", without this node's own) ranked above `self` (normalized, as the
// membership spells it; "" when unknown), highest weight first, for a pull from
// `registry_domain` ("docker.io"). Empty when there is no such member or home_peers is 0.
std::vector<registry::RegistryEndpoint> HomePeerEndpoints(const Digest& digest,
                                                          std::span<const std::string> members,
                                                          std::string_view self,
                                                          const config::PeersConfig& peers,
                                                          std::string_view registry_domain);

}  // namespace berth::pull
