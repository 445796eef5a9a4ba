// File: berth/peers/rendezvous.h
//
// Which peers are a blob's home: rendezvous (highest-random-weight) hashing. Every node computes,
// for a digest, a weight per member, sha256("<member>\n<digest>") read as a big-endian 64-bit
// number, and the members with the highest weights, in order, are the digest's home peers. Every
// node that knows the same members picks the same homes with no coordination, and when a member
// comes or goes only the digests whose homes include it move (a member's weight for a digest
// does not depend on the other members).
//
// Members are peer addresses as the membership gives them ("10.0.0.7:5050", "[fd00::7]:5050"),
// compared as strings: every node must spell them the same way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "berth/digest/digest.h"

namespace berth::peers {

// The weight of `member` for `digest`.
uint64_t RendezvousWeight(std::string_view member, const Digest& digest);

// The `count` members (all of them if fewer) with the highest weights for `digest`, highest
// first; ties, which need a 64-bit collision, go to the smaller address. Duplicates in `members`
// count once.
std::vector<std::string> HomePeers(const Digest& digest, std::span<const std::string> members,
                                   size_t count);

}  // namespace berth::peers
