#include "testing/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <map>
#include <thread>

#include "berth/base/file_util.h"
#include "berth/base/unique_fd.h"
#include "testing/secret_sentinel.h"

extern char** environ;

namespace berth::testing {
namespace {

// Resolves a program name like execvp would, but in the parent, so that "not found" is reported
// as an error with a clear message rather than as an exit code.
Result<std::string> ResolveProgram(const std::string& program) {
  if (program.find('/') != std::string::npos) {
    if (::access(program.c_str(), X_OK) != 0) {
      return Fail(ErrnoError(errno, "cannot execute " + program));
    }
    return program;
  }
  const char* path_env = std::getenv("PATH");
  std::string_view path = path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    size_t colon = path.find(':');
    std::string_view dir = path.substr(0, colon);
    std::string candidate = (dir.empty() ? std::string(".") : std::string(dir)) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) break;
    path.remove_prefix(colon + 1);
  }
  return Fail(ErrorCode::kNotFound,
              "program \"" + program + "\" not found in $PATH; install it or pass a full path");
}

ExitStatus DecodeWaitStatus(int status) {
  ExitStatus result;
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  } else {
    result.exit_code = -1;
  }
  return result;
}

// Everything after fork() in the child must be async-signal-safe: the test process has threads,
// and one of them may hold the malloc lock at the moment of the fork.
[[noreturn]] void RunChild(pid_t parent, const char* program, char* const* argv, char* const* envp,
                           const char* working_directory, int null_fd, int log_fd, int error_fd) {
  auto fail = [error_fd](int err) {
    ssize_t ignored = ::write(error_fd, &err, sizeof(err));
    (void)ignored;
    ::_exit(127);
  };
  ::setpgid(0, 0);
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(errno);
  // The parent may have died between fork() and prctl(); then no signal would ever come.
  if (::getppid() != parent) ::_exit(127);

  sigset_t all;
  sigemptyset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  struct sigaction default_action = {};
  default_action.sa_handler = SIG_DFL;
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD})
    ::sigaction(sig, &default_action, nullptr);

  if (working_directory != nullptr && ::chdir(working_directory) != 0) fail(errno);
  if (::dup2(null_fd, STDIN_FILENO) < 0) fail(errno);
  if (::dup2(log_fd, STDOUT_FILENO) < 0) fail(errno);
  if (::dup2(log_fd, STDERR_FILENO) < 0) fail(errno);
  // Descriptors other threads opened without O_CLOEXEC (sockets, curl handles) must not leak
  // into the child: a leaked listening socket would keep a test's port busy.
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    for (int fd = 3; fd < 4096; ++fd) {
      if (fd != error_fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
  }
  ::execve(program, argv, envp);
  fail(errno);
  ::_exit(127);
}

}  // namespace

std::string ExitStatus::ToString() const {
  if (signal.has_value()) {
    const char* name = ::strsignal(*signal);
    return "signal " + std::to_string(*signal) + " (" + (name != nullptr ? name : "?") + ")";
  }
  return "exit code " + std::to_string(exit_code.value_or(-1));
}

Result<std::unique_ptr<ChildProcess>> ChildProcess::Start(const ChildProcessOptions& options) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return Fail(ErrorCode::kInvalidArgument, "ChildProcess needs a program in argv[0]");
  }
  if (options.log_file.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "ChildProcess needs a log_file for the child's stdout and stderr");
  }
  BERTH_ASSIGN_OR_RETURN(std::string program, ResolveProgram(options.argv[0]));

  // Build every buffer the child needs before forking.
  std::vector<char*> argv;
  for (const std::string& arg : options.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  std::map<std::string, std::string> env_map;
  if (options.inherit_environment) {
    for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
      std::string_view item(*entry);
      size_t eq = item.find('=');
      if (eq == std::string_view::npos) continue;
      env_map[std::string(item.substr(0, eq))] = std::string(item.substr(eq + 1));
    }
  }
  for (const auto& [name, value] : options.env) env_map[name] = value;
  std::vector<std::string> env_strings;
  env_strings.reserve(env_map.size());
  for (const auto& [name, value] : env_map) env_strings.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (std::string& entry : env_strings) envp.push_back(entry.data());
  envp.push_back(nullptr);

  UniqueFd log_fd(
      ::open(options.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!log_fd) return Fail(ErrnoError(errno, "open child log " + options.log_file.string()));
  UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_fd) return Fail(ErrnoError(errno, "open /dev/null"));
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return Fail(ErrnoError(errno, "pipe2"));
  UniqueFd error_read(pipe_fds[0]);
  UniqueFd error_write(pipe_fds[1]);
  std::string working_directory = options.working_directory.string();

  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return Fail(ErrnoError(errno, "fork for " + program));
  if (pid == 0) {
    RunChild(parent, program.c_str(), argv.data(), envp.data(),
             working_directory.empty() ? nullptr : working_directory.c_str(), null_fd.get(),
             log_fd.get(), error_write.get());
  }
  // Also set the group from the parent, so that Stop() can signal the group even if it runs
  // before the child got to its own setpgid().
  ::setpgid(pid, pid);
  auto child = std::unique_ptr<ChildProcess>(new ChildProcess(pid, options.log_file));
  if (std::string name = std::filesystem::path(program).filename().string();
      name.starts_with("berth")) {
    child->product_name_ = std::move(name);
  }
  error_write.reset();

  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(error_read.get(), &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    child->Stop(std::chrono::milliseconds(0));
    return Fail(ErrnoError(child_errno, "exec " + program));
  }
  return child;
}

ChildProcess::~ChildProcess() {
  Stop();
  // The log is read now, while the test's temp dir still holds it; the check runs at the end
  // of the test.
  if (!product_name_.empty()) NoteProductOutput(product_name_ + " log", ReadLog());
}

bool ChildProcess::Reap() {
  if (status_.has_value()) return true;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    status_ = DecodeWaitStatus(status);
    return true;
  }
  if (r < 0 && errno == ECHILD) {
    // Someone else reaped it (should not happen); treat it as gone.
    status_ = ExitStatus{.exit_code = -1};
    return true;
  }
  return false;
}

bool ChildProcess::Running() { return !Reap(); }

Result<ExitStatus> ChildProcess::WaitForExit(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!Reap()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return Fail(ErrorCode::kDeadlineExceeded, "child " + std::to_string(pid_) +
                                                    " still running after " +
                                                    std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return *status_;
}

ExitStatus ChildProcess::Stop(std::chrono::milliseconds grace) {
  if (group_stopped_) return *status_;
  if (!Reap()) {
    if (::kill(-pid_, SIGTERM) != 0) ::kill(pid_, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + grace;
    while (!Reap() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!Reap()) {
      if (::kill(-pid_, SIGKILL) != 0) ::kill(pid_, SIGKILL);
      int status = 0;
      pid_t r;
      do {
        r = ::waitpid(pid_, &status, 0);
      } while (r < 0 && errno == EINTR);
      status_ = r == pid_ ? DecodeWaitStatus(status) : ExitStatus{.signal = SIGKILL};
    }
  }
  // Helpers the program started may still be alive in its group; they go too. Done once: the
  // group id could in theory be reused long after the group has died.
  ::kill(-pid_, SIGKILL);
  group_stopped_ = true;
  return *status_;
}

std::string ChildProcess::ReadLog() const {
  Result<std::string> content = ReadFile(log_file_);
  if (!content)
    return "<cannot read " + log_file_.string() + ": " + content.error().ToString() + ">";
  return *std::move(content);
}

}  // namespace berth::testing
