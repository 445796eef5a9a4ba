#include "berth/peers/membership.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "testing/result_matchers.h"

namespace berth::peers {
namespace {

using ::berth::testing::FailsWith;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Not;

TEST(NormalizeAddressTest, SpellsNumericAddressesOneWay) {
  for (const auto& [written, normalized] : std::vector<std::pair<std::string, std::string>>{
           {"10.0.0.2:5050", "10.0.0.2:5050"},
           {"[FD00:0:0::7]:5050", "[fd00::7]:5050"},
           {"node-1.peers:5050", "node-1.peers:5050"}}) {
    ASSERT_OK_AND_ASSIGN(std::string spelled, NormalizeAddress(written));
    EXPECT_EQ(spelled, normalized);
  }
}

TEST(NormalizeAddressTest, RefusesWhatIsNoHostAndPort) {
  EXPECT_THAT(NormalizeAddress("10.0.0.2"), FailsWith(ErrorCode::kInvalidArgument, "no port"));
  EXPECT_THAT(NormalizeAddress("10.0.0.2:0"), FailsWith(ErrorCode::kInvalidArgument, "1 to 65535"));
  EXPECT_THAT(NormalizeAddress("fd00::7:5050"),
              FailsWith(ErrorCode::kInvalidArgument, "without brackets"));
  EXPECT_THAT(NormalizeAddress("[node]:5050"), FailsWith(ErrorCode::kInvalidArgument, "brackets"));
}

TEST(MembershipTest, StaticPeersWithoutSelf) {
  ASSERT_OK_AND_ASSIGN(
      auto members,
      Membership::Create({.static_peers = {"10.0.0.3:5050", "10.0.0.1:5050", "[fd00::0:9]:5050"},
                          .self = "10.0.0.3:5050"}));
  EXPECT_THAT(members->Current(), ElementsAre("10.0.0.1:5050", "[fd00::9]:5050"));
  EXPECT_OK(members->Refresh());  // no DNS name: nothing to do
}

TEST(MembershipTest, WithoutSelfAMemberAtAnOwnAddressAndTheOwnPortIsThisNode) {
  const std::string own = "10.9.0.7";  // this "host"'s addresses: 10.9.0.7 and [fd00::7]
  auto own_addresses = [](uint16_t port) {
    return std::vector<std::string>{fmt::format("10.9.0.7:{}", port),
                                    fmt::format("[fd00::7]:{}", port)};
  };
  const std::string me = own + ":5050";
  ASSERT_OK_AND_ASSIGN(auto members,
                       Membership::Create({.static_peers = {"10.255.0.1:5050", me, own + ":6060"},
                                           .own_port = 5050,
                                           .own_addresses = own_addresses}));
  EXPECT_EQ(members->Self(), me);
  EXPECT_THAT(members->Current(), ElementsAre("10.255.0.1:5050", own + ":6060"))
      << "another port at this host is another node";
  // Without own_port nothing is found.
  ASSERT_OK_AND_ASSIGN(auto unknown,
                       Membership::Create({.static_peers = {me}, .own_addresses = own_addresses}));
  EXPECT_EQ(unknown->Self(), "");
  EXPECT_THAT(unknown->Current(), ElementsAre(me));
  // A configured self wins.
  ASSERT_OK_AND_ASSIGN(auto configured, Membership::Create({.static_peers = {me},
                                                            .self = "10.255.0.1:5050",
                                                            .own_port = 5050,
                                                            .own_addresses = own_addresses}));
  EXPECT_EQ(configured->Self(), "10.255.0.1:5050");
  EXPECT_THAT(configured->Current(), ElementsAre(me));
}

// "localhost" resolves from /etc/hosts, with no network: each address gets the port.
TEST(MembershipTest, DnsRecordsBecomeMembersWithThePort) {
  ASSERT_OK_AND_ASSIGN(auto members, Membership::Create({.static_peers = {"10.0.0.1:5050"},
                                                         .dns_name = "localhost",
                                                         .port = 7000,
                                                         .self = "10.0.0.1:5050"}));
  EXPECT_TRUE(members->Current().empty()) << "before the first resolution only static peers";
  ASSERT_OK(members->Refresh());
  const std::vector<std::string> now = members->Current();
  EXPECT_THAT(now, Contains("127.0.0.1:7000"));
  EXPECT_THAT(now, Not(Contains("10.0.0.1:5050")));
}

TEST(MembershipTest, ADnsNameNeedsAPort) {
  EXPECT_THAT(Membership::Create({.dns_name = "berth-peers"}),
              FailsWith(ErrorCode::kInvalidArgument, "need a port"));
}

TEST(MembershipTest, RunResolvesAgainUntilDestroyed) {
  ASSERT_OK_AND_ASSIGN(auto members,
                       Membership::Create({.dns_name = "localhost",
                                           .port = 7000,
                                           .refresh_interval = std::chrono::milliseconds(20)}));
  members->Run();
  for (int i = 0; i < 500 && members->Current().empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_THAT(members->Current(), Contains("127.0.0.1:7000"));
}

}  // namespace
}  // namespace berth::peers
