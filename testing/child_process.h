// File: testing/child_process.h
//
// ChildProcess runs a program (a registry, a CLI under test) as a child of the test process and
// guarantees that it does not outlive the test:
//
//  - the child runs in its own process group, and Stop() signals the whole group, so helpers the
//    program spawns are stopped too;
//  - Stop() sends SIGTERM, waits up to a grace period, then sends SIGKILL and reaps the child;
//  - the destructor always calls Stop();
//  - the child is started with PR_SET_PDEATHSIG(SIGKILL), so if the test process crashes or is
//    killed (a ctest timeout) the kernel kills the child as well. Note that Linux ties the death
//    signal to the *thread* that forked: start children from a thread that outlives them (the
//    test's main thread), never from a short-lived worker thread.
//
// stdin is /dev/null; stdout and stderr are appended to a log file, which tests print when they
// fail (ReadLog()).
//
//   BERTH_ASSIGN_OR_RETURN(auto child, ChildProcess::Start({
//       .argv = {"/usr/bin/docker-registry", "serve", config.string()},
//       .log_file = dir.Join("registry.log")}));
//
// Thread safety: Start() may be called from any thread (see the death-signal note). Methods of
// one ChildProcess must not be called concurrently.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "berth/base/result.h"

namespace berth::testing {

struct ChildProcessOptions {
  // argv[0] is the program; a name without '/' is looked up in $PATH. Must not be empty.
  std::vector<std::string> argv;
  // Variables added to (or replacing those in) the environment, as name/value pairs.
  std::vector<std::pair<std::string, std::string>> env;
  // When false the child starts with only `env`; when true, with the test's environment plus
  // `env`.
  bool inherit_environment = true;
  // Where stdout and stderr go (opened for append, created 0644). Required.
  std::filesystem::path log_file;
  // Working directory of the child; empty keeps the test's.
  std::filesystem::path working_directory;
};

// How a child ended. Exactly one of exit_code / signal is set.
struct ExitStatus {
  std::optional<int> exit_code;
  std::optional<int> signal;

  bool success() const { return exit_code.has_value() && *exit_code == 0; }
  // "exit code 1" / "signal 9 (Killed)".
  std::string ToString() const;
};

class ChildProcess {
 public:
  // Forks and execs options.argv. Returns once the exec has succeeded (so a missing program is
  // an error here, kNotFound, not a silent exit later), or kInvalidArgument for empty argv or
  // log_file, or an errno error if the log file cannot be opened or fork fails.
  static Result<std::unique_ptr<ChildProcess>> Start(const ChildProcessOptions& options);

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // Stop()s the child (SIGTERM, then SIGKILL after the default grace period).
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  const std::filesystem::path& log_file() const { return log_file_; }

  // True while the child has not exited. Reaps it if it has (non-blocking).
  bool Running();

  // Waits up to `timeout` for the child to exit by itself. Returns its status, or kDeadlineExceeded
  // if it is still running (it is left running).
  Result<ExitStatus> WaitForExit(std::chrono::milliseconds timeout);

  // Sends SIGTERM to the child's process group, waits up to `grace` for the child to exit, then
  // sends SIGKILL to the group and reaps the child. Idempotent: later calls return the status
  // recorded by the first. Blocks for at most `grace` plus a moment.
  ExitStatus Stop(std::chrono::milliseconds grace = std::chrono::seconds(5));

  // The log file's content (stdout and stderr of the child), or a note saying why it could not
  // be read. For test failure messages.
  std::string ReadLog() const;

 private:
  ChildProcess(pid_t pid, std::filesystem::path log_file)
      : pid_(pid), log_file_(std::move(log_file)) {}
  // Non-blocking reap; records status_ if the child has exited.
  bool Reap();

  pid_t pid_;
  std::filesystem::path log_file_;
  std::optional<ExitStatus> status_;
  bool group_stopped_ = false;
  // argv[0] is one of berth's own programs (berthd, berth, …): its log is handed to the
  // credential hygiene check (secret_sentinel.h) when this object goes.
  std::string product_name_;
};

}  // namespace berth::testing
