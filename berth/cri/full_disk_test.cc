#include "berth/cri/full_disk.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <vector>

namespace berth::cri {
namespace {

using ::testing::HasSubstr;

TEST(ExplainFullDiskTest, NamesTheFilesystemAndWhatToDo) {
  const std::vector<std::filesystem::path> directories = {std::filesystem::temp_directory_path()};
  Error full = ErrnoError(ENOSPC, "write blob sha256:00").WithContext("pull example.com/a:1");
  Error explained = ExplainFullDisk(full, directories);
  EXPECT_EQ(explained.code(), ErrorCode::kResourceExhausted);
  EXPECT_THAT(explained.ToString(), HasSubstr("pull example.com/a:1"));
  EXPECT_THAT(explained.ToString(), HasSubstr("No space left on device"));
  EXPECT_THAT(explained.ToString(),
              HasSubstr("the filesystem holding " + directories[0].string() + " ("));
  EXPECT_THAT(explained.ToString(), HasSubstr("free space there"));

  Error quota = ErrnoError(EDQUOT, "write");
  EXPECT_THAT(ExplainFullDisk(quota, directories).ToString(), HasSubstr("free space there"));
  Error sqlite(ErrorCode::kResourceExhausted, "commit: database or disk is full");
  EXPECT_THAT(ExplainFullDisk(sqlite, {}).ToString(),
              HasSubstr("the filesystem holding berth's root is full"));
}

TEST(ExplainFullDiskTest, LeavesOtherErrorsAlone) {
  const std::vector<std::filesystem::path> directories = {std::filesystem::temp_directory_path()};
  // A limit, not a disk: kResourceExhausted too, but no hint.
  Error limit(ErrorCode::kResourceExhausted, "manifest is over the 4 MiB limit");
  EXPECT_EQ(ExplainFullDisk(limit, directories).ToString(), limit.ToString());
  Error other = ErrnoError(ENOENT, "open blob");
  EXPECT_EQ(ExplainFullDisk(other, directories).ToString(), other.ToString());
  EXPECT_EQ(ExplainFullDisk(other, directories).code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace berth::cri
