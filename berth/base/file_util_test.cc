#include "berth/base/file_util.h"

#include <sys/stat.h>

#include <filesystem>

#include <gtest/gtest.h>

namespace berth {
namespace {

class FileUtilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("berth-file-util-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    ASSERT_TRUE(MakeDirectories(dir_));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(FileUtilTest, AtomicWriteReplacesAndLeavesNoTemp) {
  auto path = dir_ / "state.json";
  ASSERT_TRUE(WriteFileAtomically(path, "one"));
  ASSERT_TRUE(WriteFileAtomically(path, "two", 0600));
  EXPECT_EQ(ReadFile(path).value(), "two");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  int entries = 0;
  for ([[maybe_unused]] auto& entry : std::filesystem::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST_F(FileUtilTest, SyncDirectorySyncsAnExistingDirectoryOnly) {
  EXPECT_TRUE(SyncDirectory(dir_));
  Result<void> missing = SyncDirectory(dir_ / "missing");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message().find("fsync directory"), std::string::npos);
  ASSERT_TRUE(WriteFileAtomically(dir_ / "file", "x"));
  EXPECT_FALSE(SyncDirectory(dir_ / "file"));  // not a directory
}

TEST_F(FileUtilTest, ReadMissingIsNotFound) {
  auto result = ReadFile(dir_ / "missing");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(result.error().message().find("missing"), std::string::npos);
}

TEST_F(FileUtilTest, ReadEnforcesLimit) {
  ASSERT_TRUE(WriteFileAtomically(dir_ / "big", std::string(1000, 'x')));
  EXPECT_EQ(ReadFile(dir_ / "big", 999).error().code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(ReadFile(dir_ / "big", 1000).value().size(), 1000u);
}

TEST_F(FileUtilTest, AtomicWriteIntoMissingDirFails) {
  auto result = WriteFileAtomically(dir_ / "no" / "such" / "file", "x");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace berth
