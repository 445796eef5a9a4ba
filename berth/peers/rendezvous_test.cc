#include "berth/peers/rendezvous.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace berth::peers {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAreArray;

std::vector<Digest> Digests(int count) {
  std::vector<Digest> digests;
  for (int i = 0; i < count; ++i) digests.push_back(Digest::Sha256Of("blob " + std::to_string(i)));
  return digests;
}

const std::vector<std::string> kFive = {"10.0.0.1:5050", "10.0.0.2:5050", "10.0.0.3:5050",
                                        "10.0.0.4:5050", "[fd00::5]:5050"};

TEST(RendezvousTest, HomesAreTheHighestWeightsInOrder) {
  const Digest digest = Digest::Sha256Of("a layer");
  const std::vector<std::string> homes = HomePeers(digest, kFive, 3);
  ASSERT_EQ(homes.size(), 3u);
  EXPECT_GT(RendezvousWeight(homes[0], digest), RendezvousWeight(homes[1], digest));
  EXPECT_GT(RendezvousWeight(homes[1], digest), RendezvousWeight(homes[2], digest));
  for (const std::string& member : kFive) {
    if (std::find(homes.begin(), homes.end(), member) != homes.end()) continue;
    EXPECT_LT(RendezvousWeight(member, digest), RendezvousWeight(homes[2], digest)) << member;
  }
}

TEST(RendezvousTest, EveryNodeAgreesWhateverOrderItKnowsTheMembersIn) {
  std::vector<std::string> reversed(kFive.rbegin(), kFive.rend());
  reversed.push_back(kFive[0]);  // a duplicate counts once
  for (const Digest& digest : Digests(100)) {
    EXPECT_EQ(HomePeers(digest, kFive, 2), HomePeers(digest, reversed, 2));
  }
  EXPECT_EQ(HomePeers(Digests(1)[0], kFive, 10).size(), kFive.size());
  EXPECT_TRUE(HomePeers(Digests(1)[0], {}, 2).empty());
}

// The weight is a fixed function of member and digest, so nodes of different builds agree.
TEST(RendezvousTest, TheWeightIsStable) {
  EXPECT_EQ(RendezvousWeight("10.0.0.1:5050", Digest::Sha256Of("")),
            RendezvousWeight("10.0.0.1:5050", Digest::Sha256Of("")));
  EXPECT_NE(RendezvousWeight("10.0.0.1:5050", Digest::Sha256Of("")),
            RendezvousWeight("10.0.0.2:5050", Digest::Sha256Of("")));
}

TEST(RendezvousTest, ALeavingMemberMovesOnlyTheDigestsItWasHomeFor) {
  std::vector<std::string> four(kFive.begin(), kFive.end() - 1);
  int moved = 0;
  for (const Digest& digest : Digests(1000)) {
    const std::vector<std::string> before = HomePeers(digest, kFive, 2);
    const std::vector<std::string> after = HomePeers(digest, four, 2);
    if (before[0] != kFive.back() && before[1] != kFive.back()) {
      EXPECT_EQ(before, after) << digest.ToString();
    } else {
      ++moved;
      // The remaining home keeps its place; the next member by weight joins.
      const std::string& stayed = before[0] == kFive.back() ? before[1] : before[0];
      EXPECT_EQ(after[0], stayed);
    }
  }
  // Each member is among the two homes of about 2/5 of the digests.
  EXPECT_GT(moved, 300);
  EXPECT_LT(moved, 500);
}

TEST(RendezvousTest, DigestsSpreadOverTheMembers) {
  std::map<std::string, int> first;
  for (const Digest& digest : Digests(1000)) ++first[HomePeers(digest, kFive, 1)[0]];
  ASSERT_EQ(first.size(), kFive.size());
  for (const auto& [member, count] : first) {
    EXPECT_GT(count, 140) << member;  // 200 each on average
    EXPECT_LT(count, 260) << member;
  }
}

}  // namespace
}  // namespace berth::peers
