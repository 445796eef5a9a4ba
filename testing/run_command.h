// File: testing/run_command.h
//
// RunCommand runs a program to completion with stdin from /dev/null and its stdout and stderr
// captured separately (through files in `scratch_dir`), for tests that drive the CLI binaries.
//
// Thread safety: may be called from several threads with different scratch directories.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "berth/base/result.h"

namespace berth::testing {

struct CommandResult {
  int exit_code = -1;  // 128 + signal number when the program was killed
  std::string out;
  std::string err;
};

// Runs argv[0] (a path; PATH is not searched) with `argv`. kInvalidArgument for an empty argv;
// posix_spawn's or waitpid's errno error when the program cannot be started or waited for
// (kNotFound for a missing program, kPermissionDenied for one that is not executable). The
// output is also noted for the credential hygiene check (secret_sentinel.h).
Result<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                 const std::filesystem::path& scratch_dir);

}  // namespace berth::testing
