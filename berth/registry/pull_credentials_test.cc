#include "berth/registry/pull_credentials.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "berth/base/log.h"
#include "testing/result_matchers.h"
#include "testing/secret_sentinel.h"

namespace berth::registry {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

CriAuthConfig AuthFor(std::string user, std::string password) {
  return {.username = std::move(user), .password = Secret(std::move(password))};
}

TEST(PullCredentialsTest, HeldWhileTheHoldLivesAndGoneAfter) {
  PullCredentials credentials;
  EXPECT_FALSE(credentials.ForImage("busybox"));
  {
    ASSERT_OK_AND_ASSIGN(PullCredentials::Hold hold,
                         credentials.Register("busybox", AuthFor("kubelet", "pw")));
    EXPECT_TRUE(hold.held());
    std::optional<CriAuthConfig> found = credentials.ForImage("busybox");
    ASSERT_TRUE(found);
    EXPECT_EQ(found->username, "kubelet");
    EXPECT_EQ(found->password.reveal(), "pw");
    EXPECT_EQ(credentials.HoldersOf("busybox"), 1u);
    EXPECT_EQ(credentials.size(), 1u);
  }
  EXPECT_FALSE(credentials.ForImage("busybox"));
  EXPECT_FALSE(credentials.ForHost("docker.io"));
  EXPECT_EQ(credentials.HoldersOf("busybox"), 0u);
  EXPECT_EQ(credentials.size(), 0u);
  EXPECT_EQ(credentials.ToString(), "none");
}

TEST(PullCredentialsTest, ReleaseDropsAtOnceAndIsIdempotent) {
  PullCredentials credentials;
  ASSERT_OK_AND_ASSIGN(PullCredentials::Hold hold,
                       credentials.Register("r.test/app:v1", AuthFor("u", "p")));
  hold.Release();
  EXPECT_FALSE(hold.held());
  EXPECT_FALSE(credentials.ForImage("r.test/app:v1"));
  hold.Release();
  EXPECT_EQ(credentials.size(), 0u);
}

// The key is the reference as containerd's CRI writes it into the snapshot labels: any
// spelling kubelet used finds the same entry, and the registry host finds it too.
TEST(PullCredentialsTest, AnySpellingOfTheReferenceAndItsHostFindTheEntry) {
  PullCredentials credentials;
  ASSERT_OK_AND_ASSIGN(PullCredentials::Hold hold,
                       credentials.Register("busybox", AuthFor("u", "p")));
  EXPECT_TRUE(credentials.ForImage("docker.io/library/busybox:latest"));
  EXPECT_TRUE(credentials.ForImage("library/busybox"));
  EXPECT_TRUE(credentials.ForHost("docker.io"));
  EXPECT_FALSE(credentials.ForImage("busybox:1.36"));
  EXPECT_FALSE(credentials.ForImage("docker.io/other/busybox:latest"));
  EXPECT_FALSE(credentials.ForHost("r.test"));
  EXPECT_FALSE(credentials.ForImage("NOT A REFERENCE"));
  ASSERT_OK_AND_ASSIGN(std::string key, PullCredentials::ImageKey("busybox"));
  EXPECT_EQ(key, "docker.io/library/busybox:latest");

  ASSERT_OK_AND_ASSIGN(
      PullCredentials::Hold other,
      credentials.Register("127.0.0.1:5000/team/app@sha256:" + std::string(64, 'a'),
                           AuthFor("v", "q")));
  EXPECT_EQ(credentials.ForHost("127.0.0.1:5000")->username, "v");
  EXPECT_EQ(credentials.ForHost("docker.io")->username, "u");
}

TEST(PullCredentialsTest, AnInvalidReferenceHoldsNothing) {
  PullCredentials credentials;
  EXPECT_THAT(credentials.Register("Not/A/Reference", AuthFor("u", "p")),
              testing::FailsWith(ErrorCode::kInvalidArgument));
  EXPECT_EQ(credentials.size(), 0u);
}

// Two pulls of the same image at once each hold their own credentials: the most recent is found,
// and when it ends the other's are found again; when both end, none.
TEST(PullCredentialsTest, ConcurrentHoldersOfOneImageEachKeepTheirs) {
  PullCredentials credentials;
  ASSERT_OK_AND_ASSIGN(PullCredentials::Hold first,
                       credentials.Register("busybox", AuthFor("first", "p1")));
  ASSERT_OK_AND_ASSIGN(PullCredentials::Hold second,
                       credentials.Register("docker.io/library/busybox", AuthFor("second", "p2")));
  EXPECT_EQ(credentials.HoldersOf("busybox"), 2u);
  EXPECT_EQ(credentials.ForImage("busybox")->username, "second");
  second.Release();
  EXPECT_EQ(credentials.ForImage("busybox")->username, "first");
  EXPECT_EQ(credentials.HoldersOf("busybox"), 1u);
  PullCredentials::Hold moved = std::move(first);
  EXPECT_FALSE(first.held());  // NOLINT(bugprone-use-after-move): testing the moved-from state
  EXPECT_EQ(credentials.ForImage("busybox")->username, "first");
  moved = PullCredentials::Hold();
  EXPECT_FALSE(credentials.ForImage("busybox"));
}

TEST(PullCredentialsTest, ThreadsRegisteringAndReleasingLeaveNothing) {
  PullCredentials credentials;
  std::atomic<int> found{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&credentials, &found, t] {
      for (int i = 0; i < 200; ++i) {
        auto hold = credentials.Register(t % 2 == 0 ? "busybox" : "r.test/app:v1",
                                         AuthFor(fmt::format("user{}", t), "p"));
        if (!hold) return;
        if (credentials.ForImage(t % 2 == 0 ? "busybox" : "r.test/app:v1")) ++found;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(found.load(), 8 * 200);
  EXPECT_EQ(credentials.size(), 0u);
}

// ToString(), for logs and test failures, names images, hosts and counts; never a secret, and
// neither does a log line that carries it or the credentials found.
TEST(PullCredentialsTest, NoSecretInToStringOrLogLines) {
  const std::string password = berth::testing::SentinelSecret("pull-credentials-password");
  const std::string token = berth::testing::SentinelSecret("pull-credentials-token");
  PullCredentials credentials;
  CriAuthConfig auth = AuthFor("kubelet", password);
  auth.identity_token = Secret(token);
  auth.auth = Secret(token);
  auth.registry_token = Secret(token);
  ASSERT_OK_AND_ASSIGN(PullCredentials::Hold hold, credentials.Register("busybox", auth));
  ASSERT_OK_AND_ASSIGN(PullCredentials::Hold again, credentials.Register("busybox", auth));

  const std::string text = credentials.ToString();
  EXPECT_EQ(text, "docker.io/library/busybox:latest host=docker.io holders=2");
  std::optional<CriAuthConfig> found = credentials.ForImage("busybox");
  ASSERT_TRUE(found);
  const std::string line =
      log::FormatLine("cri.pull_credentials", {{"held", text},
                                               {"user", found->username},
                                               {"password", found->password},
                                               {"token", found->registry_token},
                                               {"value", found->auth}});
  for (const std::string& output : {text, line}) {
    EXPECT_THAT(output, Not(HasSubstr(password)));
    EXPECT_THAT(output, Not(HasSubstr(token)));
    EXPECT_THAT(output, Not(HasSubstr("berth-sentinel")));
  }
  EXPECT_THAT(line, HasSubstr("user=kubelet"));
}

}  // namespace
}  // namespace berth::registry
