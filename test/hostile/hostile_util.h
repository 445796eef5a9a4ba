// File: test/hostile/hostile_util.h
//
// Shared helpers of the hostile-input suite (test-only, header-only): assertions on the error
// class, and a snapshot of a directory tree that shows any change made beside a target root.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>

#include "berth/base/error.h"
#include "berth/base/result.h"

namespace berth::hostile {

// Asserts that `result` failed with `code` and that its full text names `phrase`.
template <typename T>
::testing::AssertionResult FailsWith(const Result<T>& result, ErrorCode code,
                                     std::string_view phrase) {
  if (result.has_value()) return ::testing::AssertionFailure() << "succeeded, expected an error";
  const Error& error = result.error();
  std::string text = error.ToString();
  if (error.code() != code) {
    return ::testing::AssertionFailure() << "code " << ErrorCodeName(error.code()) << ", expected "
                                         << ErrorCodeName(code) << ": " << text.substr(0, 2000);
  }
  if (text.find(phrase) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "message does not say \"" << phrase << "\": " << text.substr(0, 2000);
  }
  return ::testing::AssertionSuccess();
}

// Everything under `dir` (and `dir` itself): type, mode, link count, size, mtime, and the
// content of regular files and symlinks, so that any change shows up in a comparison.
inline std::map<std::string, std::string> SnapshotTree(const std::filesystem::path& dir) {
  std::map<std::string, std::string> out;
  auto describe = [&](const std::filesystem::path& path) {
    struct stat st {};
    if (lstat(path.c_str(), &st) != 0) {
      out[path.string()] = "missing";
      return;
    }
    std::string description =
        fmt::format("mode={:o} nlink={} size={} mtime={}.{}", st.st_mode, st.st_nlink, st.st_size,
                    st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    if (S_ISREG(st.st_mode)) {
      std::ifstream in(path, std::ios::binary);
      std::ostringstream content;
      content << in.rdbuf();
      description += " content=" + content.str();
    } else if (S_ISLNK(st.st_mode)) {
      std::error_code ignored;
      description += " target=" + std::filesystem::read_symlink(path, ignored).string();
    }
    out[path.string()] = description;
  };
  describe(dir);
  std::error_code error;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, error);
       !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
    describe(it->path());
  }
  return out;
}

}  // namespace berth::hostile
