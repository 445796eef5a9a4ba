#include "testing/run_command.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>

#include "berth/base/file_util.h"
#include "testing/secret_sentinel.h"

extern char** environ;

namespace berth::testing {

Result<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                 const std::filesystem::path& scratch_dir) {
  if (argv.empty()) return Fail(ErrorCode::kInvalidArgument, "RunCommand: empty argv");
  const std::filesystem::path out_path = scratch_dir / "command.out";
  const std::filesystem::path err_path = scratch_dir / "command.err";
  std::vector<std::string> strings = argv;
  std::vector<char*> raw;
  for (std::string& text : strings) raw.push_back(text.data());
  raw.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  pid_t pid = 0;
  int spawned = posix_spawn(&pid, raw[0], &actions, nullptr, raw.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return Fail(ErrnoError(spawned, fmt::format("start {}", argv[0])));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Fail(ErrnoError(errno, fmt::format("wait for {}", argv[0])));
  }
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = ReadFile(out_path).value_or("");
  result.err = ReadFile(err_path).value_or("");
  // For the credential hygiene check (secret_sentinel.h): whatever the CLI showed its user.
  std::string program = std::filesystem::path(argv[0]).filename().string();
  NoteProductOutput(program + " stdout", result.out);
  NoteProductOutput(program + " stderr", result.err);
  return result;
}

}  // namespace berth::testing
