#include "berth/stack/root_lock.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "testing/temp_dir.h"

namespace berth::stack {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(RootLockTest, SecondAcquireNamesTheHolder) {
  auto dir = berth::testing::TempDir::Create("root-lock");
  ASSERT_TRUE(dir);
  const auto root = dir->Join("root");
  auto first = RootLock::Acquire(root, "berthd");
  ASSERT_TRUE(first) << first.error().ToString();

  auto second = RootLock::Acquire(root, "berthd");
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable);
  EXPECT_THAT(second.error().message(),
              HasSubstr(fmt::format("another berthd (pid {}) is already running", ::getpid())));
  auto cli = RootLock::Acquire(root, "berth");
  ASSERT_FALSE(cli);
  EXPECT_THAT(cli.error().message(),
              StartsWith(fmt::format("berthd (pid {}) is already running", ::getpid())));

  auto holder = RootLock::CurrentHolder(root);
  ASSERT_TRUE(holder && *holder);
  EXPECT_EQ((*holder)->pid, ::getpid());
  EXPECT_EQ((*holder)->program, "berthd");
}

TEST(RootLockTest, FreeAfterRelease) {
  auto dir = berth::testing::TempDir::Create("root-lock");
  ASSERT_TRUE(dir);
  const auto root = dir->Join("root");
  auto holder = RootLock::CurrentHolder(root);  // no lock file yet
  ASSERT_TRUE(holder);
  EXPECT_FALSE(*holder);
  {
    auto lock = RootLock::Acquire(root, "berth");
    ASSERT_TRUE(lock);
    auto again = RootLock::Acquire(root, "berthd");
    ASSERT_FALSE(again);
    EXPECT_THAT(again.error().message(), HasSubstr("berth (pid"));
    EXPECT_THAT(again.error().message(), HasSubstr("embedded mode"));
  }
  holder = RootLock::CurrentHolder(root);
  ASSERT_TRUE(holder);
  EXPECT_FALSE(*holder);
  EXPECT_TRUE(RootLock::Acquire(root, "berthd"));
}

TEST(RootLockTest, OlderPidOnlyFileNamesBerthd) {
  auto dir = berth::testing::TempDir::Create("root-lock");
  ASSERT_TRUE(dir);
  auto lock = RootLock::Acquire(dir->path(), "berthd");
  ASSERT_TRUE(lock);
  std::ofstream(lock->path(), std::ios::trunc) << "4242\n";
  auto holder = RootLock::CurrentHolder(dir->path());
  ASSERT_TRUE(holder && *holder);
  EXPECT_EQ((*holder)->ToString(), "berthd (pid 4242)");
}

}  // namespace
}  // namespace berth::stack
