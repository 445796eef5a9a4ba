#include "testing/temp_dir.h"

#include <gtest/gtest.h>

#include <fstream>

namespace berth::testing {
namespace {

TEST(TempDirTest, CreatesUniqueDirectoriesAndRemovesThemRecursively) {
  std::filesystem::path kept;
  {
    Result<TempDir> first = TempDir::Create("unit");
    Result<TempDir> second = TempDir::Create("unit");
    ASSERT_TRUE(first) << first.error().ToString();
    ASSERT_TRUE(second) << second.error().ToString();
    EXPECT_NE(first->path(), second->path());
    EXPECT_TRUE(std::filesystem::is_directory(first->path()));
    EXPECT_TRUE(first->path().is_absolute());
    EXPECT_NE(first->path().filename().string().find("berth-unit-"), std::string::npos);

    // Nested content, including a read-only directory that remove_all alone could not empty.
    std::filesystem::create_directories(first->Join("a/b"));
    std::ofstream(first->Join("a/b/file")) << "data";
    std::filesystem::permissions(
        first->Join("a"), std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    kept = first->path();
  }
  EXPECT_FALSE(std::filesystem::exists(kept));
}

TEST(TempDirTest, MoveTransfersOwnership) {
  Result<TempDir> created = TempDir::Create();
  ASSERT_TRUE(created);
  std::filesystem::path path = created->path();
  {
    TempDir moved = std::move(*created);
    EXPECT_EQ(moved.path(), path);
    EXPECT_TRUE(created->path().empty());
    EXPECT_TRUE(std::filesystem::exists(path));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(TempDirTest, DefaultConstructedOwnsNothingUntilAssigned) {
  TempDir dir;
  EXPECT_TRUE(dir.path().empty());
  Result<TempDir> created = TempDir::Create("assigned");
  ASSERT_TRUE(created);
  std::filesystem::path path = created->path();
  dir = std::move(*created);
  EXPECT_EQ(dir.path(), path);
  EXPECT_TRUE(std::filesystem::is_directory(path));
  dir = TempDir();
  EXPECT_TRUE(dir.path().empty());
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(TempDirTest, RejectsSlashInPrefix) {
  Result<TempDir> created = TempDir::Create("a/b");
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace berth::testing
