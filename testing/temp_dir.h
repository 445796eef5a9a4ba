// File: testing/temp_dir.h
//
// TempDir is a uniquely named directory under $TMPDIR (or /tmp) that is removed, with everything
// in it, when the TempDir is destroyed. Each one has a fresh name from mkdtemp(3), so tests that
// run in parallel (ctest -j) never share a directory.
//
//   BERTH_ASSIGN_OR_RETURN(TempDir dir, TempDir::Create("registry"));
//   std::filesystem::path config = dir.path() / "config.yml";
//
// A test fixture holds one as a member, empty until SetUp assigns it:
//   TempDir dir_;  ...  ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("store"));
//
// Thread safety: a TempDir is a move-only value; use one object from one thread at a time.
#pragma once

#include <filesystem>
#include <string_view>

#include "berth/base/result.h"

namespace berth::testing {

class TempDir {
 public:
  // Creates "<tmp>/berth-<prefix>-XXXXXX" with mode 0700. `prefix` may be empty and must not
  // contain '/'. Returns kInvalidArgument for a bad prefix and an errno error if mkdtemp fails.
  static Result<TempDir> Create(std::string_view prefix = "test");

  // An empty TempDir: owns no directory and path() is empty, like one that was moved from.
  TempDir() = default;

  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  // Removes the directory recursively. Failures are ignored (a test must not crash in cleanup).
  ~TempDir();

  // The absolute path of the directory. Empty after the TempDir was moved from.
  const std::filesystem::path& path() const { return path_; }
  // path() / name.
  std::filesystem::path Join(std::string_view name) const { return path_ / name; }

 private:
  explicit TempDir(std::filesystem::path path) : path_(std::move(path)) {}
  void Remove();

  std::filesystem::path path_;
};

}  // namespace berth::testing
