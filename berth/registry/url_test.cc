#include "berth/registry/url.h"

#include <gtest/gtest.h>

namespace berth::registry {
namespace {

TEST(UrlTest, Parse) {
  Url url = ParseUrl("https://Registry.example:5000/v2/a/b?x=1#frag").value();
  EXPECT_EQ(url.scheme, "https");
  EXPECT_EQ(url.host, "Registry.example:5000");
  EXPECT_EQ(url.path, "/v2/a/b?x=1");
  EXPECT_EQ(ParseUrl("http://[::1]:5000").value().host, "[::1]:5000");
  EXPECT_EQ(ParseUrl("http://h").value().path, "/");
  EXPECT_FALSE(ParseUrl("ftp://h/"));
  EXPECT_FALSE(ParseUrl("h/path"));
  EXPECT_FALSE(ParseUrl("http:///path"));
  auto with_user = ParseUrl("https://u:hunter2@h/");
  ASSERT_FALSE(with_user);
  EXPECT_EQ(with_user.error().ToString().find("hunter2"), std::string::npos);
}

TEST(UrlTest, ResolveLocation) {
  Url base = ParseUrl("http://127.0.0.1:5000/v2/a/blobs/uploads/x?y=1").value();
  EXPECT_EQ(ResolveLocation(base, "https://s3.test/bucket/o?sig=1")->ToString(),
            "https://s3.test/bucket/o?sig=1");
  EXPECT_EQ(ResolveLocation(base, "/v2/a/blobs/uploads/u?_state=s")->ToString(),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/u?_state=s");
  EXPECT_EQ(ResolveLocation(base, "//cdn.test/b")->ToString(), "http://cdn.test/b");
  EXPECT_EQ(ResolveLocation(base, "z")->ToString(), "http://127.0.0.1:5000/v2/a/blobs/uploads/z");
}

TEST(UrlTest, QueryEscape) {
  EXPECT_EQ(QueryEscape("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
  EXPECT_EQ(QueryEscape("A-z_0.~"), "A-z_0.~");
}

}  // namespace
}  // namespace berth::registry
