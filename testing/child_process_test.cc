#include "testing/child_process.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <thread>

#include "berth/base/file_util.h"
#include "testing/temp_dir.h"

namespace berth::testing {
namespace {

using std::chrono::milliseconds;

// True while `pid` exists and is not a zombie (an orphaned zombie waits for init to reap it,
// which some container init processes never do).
bool IsAlive(pid_t pid) {
  Result<std::string> stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return false;
  size_t paren = stat->rfind(')');
  return paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] != 'Z';
}

class ChildProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<TempDir> dir = TempDir::Create("child");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_ = std::make_unique<TempDir>(std::move(*dir));
  }

  std::unique_ptr<ChildProcess> StartShell(const std::string& script,
                                           ChildProcessOptions extra = {}) {
    extra.argv = {"/bin/sh", "-c", script};
    extra.log_file = dir_->Join("child.log");
    Result<std::unique_ptr<ChildProcess>> child = ChildProcess::Start(extra);
    EXPECT_TRUE(child) << child.error().ToString();
    return child ? std::move(*child) : nullptr;
  }

  // Waits until `path` has content (a child writes its pid there).
  std::string WaitForFile(const std::filesystem::path& path) {
    for (int i = 0; i < 500; ++i) {
      Result<std::string> text = ReadFile(path);
      if (text && !text->empty() && text->back() == '\n') return *text;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return "";
  }

  std::unique_ptr<TempDir> dir_;
};

TEST_F(ChildProcessTest, CapturesOutputAndExitCode) {
  auto child = StartShell("echo to-stdout; echo to-stderr >&2; exit 3");
  ASSERT_NE(child, nullptr);
  Result<ExitStatus> status = child->WaitForExit(std::chrono::seconds(10));
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_EQ(status->exit_code, 3);
  EXPECT_FALSE(status->success());
  EXPECT_EQ(status->ToString(), "exit code 3");
  std::string log = child->ReadLog();
  EXPECT_NE(log.find("to-stdout"), std::string::npos);
  EXPECT_NE(log.find("to-stderr"), std::string::npos);
  EXPECT_FALSE(child->Running());
}

TEST_F(ChildProcessTest, PassesEnvironment) {
  auto child = StartShell("echo \"value=$BERTH_CHILD_TEST\"; echo \"home=${HOME:-unset}\"",
                          {.env = {{"BERTH_CHILD_TEST", "42"}}, .inherit_environment = false});
  ASSERT_NE(child, nullptr);
  ASSERT_TRUE(child->WaitForExit(std::chrono::seconds(10)));
  EXPECT_NE(child->ReadLog().find("value=42"), std::string::npos);
  EXPECT_NE(child->ReadLog().find("home=unset"), std::string::npos);
}

TEST_F(ChildProcessTest, StopTerminatesWithSigterm) {
  auto child = StartShell("exec sleep 100");
  ASSERT_NE(child, nullptr);
  EXPECT_TRUE(child->Running());
  ExitStatus status = child->Stop();
  EXPECT_EQ(status.signal, SIGTERM);
  EXPECT_FALSE(child->Running());
  // Idempotent.
  EXPECT_EQ(child->Stop().signal, SIGTERM);
}

TEST_F(ChildProcessTest, StopEscalatesToSigkillAfterGrace) {
  auto child = StartShell("trap '' TERM; echo ready; while true; do sleep 0.05; done");
  ASSERT_NE(child, nullptr);
  // Make sure the trap is installed before signalling.
  for (int i = 0; i < 500 && child->ReadLog().find("ready") == std::string::npos; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  auto start = std::chrono::steady_clock::now();
  ExitStatus status = child->Stop(milliseconds(200));
  EXPECT_EQ(status.signal, SIGKILL);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(200));
}

TEST_F(ChildProcessTest, StopKillsTheWholeProcessGroup) {
  std::filesystem::path pid_file = dir_->Join("grandchild.pid");
  auto child = StartShell("sleep 100 & echo $! > " + pid_file.string() + "; wait");
  ASSERT_NE(child, nullptr);
  std::string pid_text = WaitForFile(pid_file);
  ASSERT_FALSE(pid_text.empty());
  pid_t grandchild = std::stoi(pid_text);
  EXPECT_TRUE(IsAlive(grandchild));
  child->Stop();
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = !IsAlive(grandchild);
    if (!gone) std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_TRUE(gone) << "grandchild " << grandchild << " survived Stop()";
}

TEST_F(ChildProcessTest, DestructorStopsTheChild) {
  pid_t pid;
  {
    auto child = StartShell("exec sleep 100");
    ASSERT_NE(child, nullptr);
    pid = child->pid();
    EXPECT_TRUE(IsAlive(pid));
  }
  EXPECT_FALSE(IsAlive(pid));
}

TEST_F(ChildProcessTest, MissingProgramIsNotFound) {
  Result<std::unique_ptr<ChildProcess>> child = ChildProcess::Start(
      {.argv = {"berth-no-such-program"}, .log_file = dir_->Join("missing.log")});
  ASSERT_FALSE(child);
  EXPECT_EQ(child.error().code(), ErrorCode::kNotFound);
}

TEST_F(ChildProcessTest, RejectsEmptyArgvAndLogFile) {
  EXPECT_EQ(ChildProcess::Start({.log_file = dir_->Join("x.log")}).error().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(ChildProcess::Start({.argv = {"/bin/true"}}).error().code(),
            ErrorCode::kInvalidArgument);
}

TEST_F(ChildProcessTest, WaitForExitTimesOutOnRunningChild) {
  auto child = StartShell("exec sleep 100");
  ASSERT_NE(child, nullptr);
  Result<ExitStatus> status = child->WaitForExit(milliseconds(50));
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_TRUE(child->Running());
}

}  // namespace
}  // namespace berth::testing
