// File: berth/snapshot/snapshot_test_util.h
//
// Small helpers for the snapshot tests: file writing and reading that fail the test loudly, and
// the reason (if any) mount tests must be skipped. Test-only; include from *_test.cc files.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "berth/snapshot/overlay_snapshotter.h"

namespace berth::snapshot::testing {

// Empty when this process may mount; otherwise why not.
inline std::string MountSkipReason() {
  if (::geteuid() != 0) return "mount(2) needs root (CAP_SYS_ADMIN); run the tests as root";
  return "";
}

inline std::string OverlaySkipReason() {
  std::string reason = MountSkipReason();
  if (!reason.empty()) return reason;
  if (!OverlaySnapshotter::KernelSupportsOverlay()) {
    return "the kernel has no overlay filesystem (modprobe overlay)";
  }
  return "";
}

inline void WriteTestFile(const std::filesystem::path& path, std::string_view content,
                          mode_t mode = 0644) {
  std::error_code error;
  std::filesystem::create_directories(path.parent_path(), error);
  ASSERT_FALSE(error) << "create " << path.parent_path() << ": " << error.message();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  ASSERT_TRUE(out) << "open " << path;
  out << content;
  out.close();
  ASSERT_TRUE(out) << "write " << path;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << "chmod " << path;
}

// The file's content, or "<missing>" when it cannot be opened.
inline std::string ReadTestFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "<missing>";
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

inline bool Exists(const std::filesystem::path& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace berth::snapshot::testing
