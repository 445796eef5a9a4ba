#include "berth/service/image_index.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace berth::service {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

ImageEntry Entry(std::string_view config) {
  ImageEntry entry;
  entry.id = Digest::Sha256Of(config);
  entry.size = 42;
  entry.user = "1000";
  return entry;
}

TEST(ImageIndexTest, NamesSortedIntoTagsAndDigests) {
  ImageIndex index;
  index.Put(Entry("A"),
            {"docker.io/library/a:2", "docker.io/library/a@sha256:" + std::string(64, '1'),
             "docker.io/library/a:1"});
  auto found = index.FindByName("docker.io/library/a:1");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->id, Digest::Sha256Of("A"));
  EXPECT_THAT(found->repo_tags, ElementsAre("docker.io/library/a:1", "docker.io/library/a:2"));
  EXPECT_EQ(found->repo_digests.size(), 1u);
  EXPECT_EQ(found->size, 42);
}

TEST(ImageIndexTest, MovedTagLeavesOldImageWithItsOtherNames) {
  ImageIndex index;
  index.Put(Entry("A"), {"r/x:latest", "r/x@sha256:aa"});
  index.Put(Entry("B"), {"r/x:latest", "r/x@sha256:bb"});
  EXPECT_EQ(index.FindByName("r/x:latest")->id, Digest::Sha256Of("B"));
  auto old = index.FindById(Digest::Sha256Of("A"));
  ASSERT_TRUE(old);
  EXPECT_THAT(old->repo_tags, IsEmpty());
  EXPECT_THAT(old->repo_digests, ElementsAre("r/x@sha256:aa"));
  EXPECT_EQ(index.List().size(), 2u);
}

TEST(ImageIndexTest, FindByRepositoryGivesEveryImageTaggedOrDigestedInIt) {
  ImageIndex index;
  const std::string repository = "docker.io/library/debian";
  index.Put(Entry("A"), {repository + ":12", repository + "@sha256:" + std::string(64, 'a')});
  index.Put(Entry("B"), {repository + "@sha256:" + std::string(64, 'b')});  // no tag
  index.Put(Entry("C"),
            {repository + "-slim:12", repository + "/sub:1", "localhost:5000/debian:12"});
  index.Put(Entry("D"), {});

  std::vector<Digest> ids;
  for (const ImageEntry& entry : index.FindByRepository(repository)) ids.push_back(entry.id);
  std::vector<Digest> expected = {Digest::Sha256Of("A"), Digest::Sha256Of("B")};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(ids, expected);  // once each, ordered by ID

  EXPECT_THAT(index.FindByRepository("docker.io/library/deb"), IsEmpty());
  ASSERT_EQ(index.FindByRepository("localhost:5000/debian").size(), 1u);
  EXPECT_EQ(index.FindByRepository("localhost:5000/debian")[0].id, Digest::Sha256Of("C"));
  EXPECT_THAT(index.FindByRepository(""), IsEmpty());
}

TEST(ImageIndexTest, IdPrefixMustBeUnique) {
  ImageIndex index;
  ImageEntry a = Entry("A");
  ImageEntry b = Entry("B");
  index.Put(a, {});
  index.Put(b, {});
  EXPECT_EQ(index.FindByIdPrefix(a.id.encoded().substr(0, 12))->id, a.id);
  EXPECT_FALSE(index.FindByIdPrefix(""));
  EXPECT_FALSE(index.FindByIdPrefix("zz"));
  // Every ID starts with some hex digit; a prefix shared by both is ambiguous.
  std::string common;
  for (size_t i = 0; i < 64 && a.id.encoded()[i] == b.id.encoded()[i]; ++i) {
    common += a.id.encoded()[i];
  }
  if (!common.empty()) {
    EXPECT_FALSE(index.FindByIdPrefix(common));
  }
}

TEST(ImageIndexTest, RemoveDropsEveryName) {
  ImageIndex index;
  index.Put(Entry("A"), {"r/x:1", "r/x:2"});
  auto removed = index.Remove(Digest::Sha256Of("A"));
  ASSERT_TRUE(removed);
  EXPECT_THAT(removed->repo_tags, ElementsAre("r/x:1", "r/x:2"));
  EXPECT_FALSE(index.FindByName("r/x:1"));
  EXPECT_FALSE(index.FindById(Digest::Sha256Of("A")));
  EXPECT_FALSE(index.Remove(Digest::Sha256Of("A")));
  EXPECT_THAT(index.List(), IsEmpty());
}

TEST(ImageIndexTest, PutAgainRefreshesFieldsKeepsNames) {
  ImageIndex index;
  index.Put(Entry("A"), {"r/x:1"});
  ImageEntry refreshed = Entry("A");
  refreshed.size = 7;
  index.Put(refreshed, {"r/x:2"});
  auto found = index.FindById(refreshed.id);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->size, 7);
  EXPECT_THAT(found->repo_tags, ElementsAre("r/x:1", "r/x:2"));
}

}  // namespace
}  // namespace berth::service
