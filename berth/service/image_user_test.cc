#include "berth/service/image_user.h"

#include <gtest/gtest.h>

namespace berth::service {
namespace {

TEST(ParseImageUserTest, Forms) {
  EXPECT_EQ(ParseImageUser(""), ImageUser{});
  EXPECT_EQ(ParseImageUser("1000"), (ImageUser{.uid = 1000}));
  EXPECT_EQ(ParseImageUser("0"), (ImageUser{.uid = 0}));
  EXPECT_EQ(ParseImageUser("1000:1000"), (ImageUser{.uid = 1000}));
  EXPECT_EQ(ParseImageUser("1000:wheel"), (ImageUser{.uid = 1000}));
  EXPECT_EQ(ParseImageUser("nobody"), (ImageUser{.username = "nobody"}));
  EXPECT_EQ(ParseImageUser("nobody:nogroup"), (ImageUser{.username = "nobody"}));
  EXPECT_EQ(ParseImageUser(":1000"), ImageUser{});
  EXPECT_EQ(ParseImageUser("12ab"), (ImageUser{.username = "12ab"}));
  EXPECT_EQ(ParseImageUser("-1"), (ImageUser{.username = "-1"}));
  EXPECT_EQ(ParseImageUser("99999999999999999999"),
            (ImageUser{.username = "99999999999999999999"}));
}

}  // namespace
}  // namespace berth::service
