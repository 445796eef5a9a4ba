#include "berth/peers/rendezvous.h"

#include <algorithm>
#include <set>
#include <utility>

namespace berth::peers {

uint64_t RendezvousWeight(std::string_view member, const Digest& digest) {
  Hasher hasher;
  hasher.Update(member);
  hasher.Update("\n");
  hasher.Update(digest.ToString());
  const Digest hash = hasher.Finish();
  // The first 16 hex digits are the hash's first 8 bytes, big-endian.
  return std::stoull(hash.encoded().substr(0, 16), nullptr, 16);
}

std::vector<std::string> HomePeers(const Digest& digest, std::span<const std::string> members,
                                   size_t count) {
  const std::set<std::string> distinct(members.begin(), members.end());
  std::vector<std::pair<uint64_t, const std::string*>> weighted;
  weighted.reserve(distinct.size());
  for (const std::string& member : distinct) {
    weighted.emplace_back(RendezvousWeight(member, digest), &member);
  }
  count = std::min(count, weighted.size());
  std::partial_sort(weighted.begin(), weighted.begin() + static_cast<std::ptrdiff_t>(count),
                    weighted.end(), [](const auto& a, const auto& b) {
                      return a.first != b.first ? a.first > b.first : *a.second < *b.second;
                    });
  std::vector<std::string> homes;
  homes.reserve(count);
  for (size_t i = 0; i < count; ++i) homes.push_back(*weighted[i].second);
  return homes;
}

}  // namespace berth::peers
