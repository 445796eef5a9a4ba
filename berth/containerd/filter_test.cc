#include "berth/containerd/filter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "testing/result_matchers.h"

namespace berth::containerd {
namespace {

using ::berth::testing::FailsWith;
using ::testing::HasSubstr;

snapshot::Info Committed(std::string name, std::string parent, snapshot::Labels labels = {}) {
  return {.kind = snapshot::Kind::kCommitted,
          .name = std::move(name),
          .parent = std::move(parent),
          .labels = std::move(labels)};
}

bool Matches(const std::vector<std::string>& filters, const snapshot::Info& info) {
  auto filter = SnapshotFilter::Parse(filters);
  EXPECT_OK(filter);
  return filter && filter->Matches(info);
}

TEST(SnapshotFilterTest, TheTargetLookupContainerdSendsMatchesLabelAndParent) {
  // metadata/snapshot.go builds labels."containerd.io/snapshot.ref"==<target>,parent=="<parent>".
  const std::string filter =
      R"(labels."containerd.io/snapshot.ref"==sha256:abc,parent=="default/1/sha256:base")";
  snapshot::Info target = Committed("default/9/sha256:abc", "default/1/sha256:base",
                                    {{"containerd.io/snapshot.ref", "sha256:abc"}});
  EXPECT_TRUE(Matches({filter}, target));
  snapshot::Info other_parent = target;
  other_parent.parent = "default/2/sha256:other";
  EXPECT_FALSE(Matches({filter}, other_parent));
  snapshot::Info other_ref = target;
  other_ref.labels["containerd.io/snapshot.ref"] = "sha256:abd";
  EXPECT_FALSE(Matches({filter}, other_ref));
  snapshot::Info unlabelled = target;
  unlabelled.labels.clear();
  EXPECT_FALSE(Matches({filter}, unlabelled));

  // The first layer: no parent, written parent=="".
  const std::string first = R"(labels."containerd.io/snapshot.ref"==sha256:abc,parent=="")";
  snapshot::Info base =
      Committed("default/3/sha256:abc", "", {{"containerd.io/snapshot.ref", "sha256:abc"}});
  EXPECT_TRUE(Matches({first}, base));
  EXPECT_FALSE(Matches({first}, target));
}

TEST(SnapshotFilterTest, FieldsOperatorsAndPresence) {
  snapshot::Info info = Committed("n1", "p1", {{"a.b", "x"}, {"k", "v"}});
  EXPECT_TRUE(Matches({"name==n1"}, info));
  EXPECT_TRUE(Matches({"name!=n2"}, info));
  EXPECT_FALSE(Matches({"name!=n1"}, info));
  EXPECT_TRUE(Matches({"kind==committed"}, info));
  EXPECT_FALSE(Matches({"kind==active"}, info));
  EXPECT_TRUE(Matches({"labels.k"}, info));         // present
  EXPECT_FALSE(Matches({"labels.missing"}, info));  // absent
  EXPECT_TRUE(Matches({"labels.a.b==x"}, info));    // unquoted parts join with '.'
  EXPECT_TRUE(Matches({R"(labels."a.b"==x)"}, info));
  EXPECT_TRUE(Matches({"labels.missing!=v"}, info));  // absent compares as ""
  EXPECT_FALSE(Matches({R"(labels.missing!="")"}, info));
  EXPECT_TRUE(Matches({" name == n1 , parent == p1 "}, info));
  EXPECT_TRUE(Matches({R"(name=="n\u0031")"}, info));
  EXPECT_TRUE(Matches({R"(labels.k=="\x76")"}, info));
}

TEST(SnapshotFilterTest, FiltersAreAlternativesAndEmptyMatchesAll) {
  snapshot::Info info = Committed("n1", "p1");
  EXPECT_TRUE(Matches({}, info));
  EXPECT_TRUE(Matches({""}, info));
  EXPECT_TRUE(Matches({"name==zzz", "name==n1"}, info));
  EXPECT_FALSE(Matches({"name==zzz", "parent==zzz"}, info));
  EXPECT_FALSE(Matches({"name==n1,parent==zzz"}, info));
}

TEST(SnapshotFilterTest, UnsupportedOrMalformedFiltersAreInvalidArgumentsNamingThem) {
  for (std::string_view bad : {"name~=n.*", "size==1", "labels==x", "name===x", R"(name=="x)",
                               "name==x parent==y", "name==", "name.sub==x", R"(name=="\q")"}) {
    auto filter = SnapshotFilter::Parse({"kind==active", std::string(bad)});
    EXPECT_THAT(filter, FailsWith(ErrorCode::kInvalidArgument)) << bad;
    if (!filter) {
      EXPECT_THAT(filter.error().message(), HasSubstr(std::string(bad))) << bad;
    }
  }
  auto regex = SnapshotFilter::Parse({"name~=n.*"});
  ASSERT_FALSE(regex);
  EXPECT_THAT(regex.error().message(), HasSubstr("(~=) are not supported"));
}

}  // namespace
}  // namespace berth::containerd
