// File: berth/stack/root_lock.h
//
// One process at a time works on a root: berthd for as long as it runs, or the berth CLI for
// one command in embedded mode. The lock is flock(LOCK_EX) on <root>/berthd.lock; its content
// names the holder, "<pid> <program>\n" (a file holding only "<pid>\n", as berthd wrote before,
// names berthd). The kernel drops the lock when the holder exits, however it exits, so a stale
// file never blocks anyone.
//
// Thread safety: RootLock is a value owned by one thread; the functions are safe to call from
// any thread.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "berth/base/result.h"
#include "berth/base/unique_fd.h"

namespace berth::stack {

// Who holds a root's lock, as the holder wrote it.
struct LockHolder {
  pid_t pid = 0;        // 0 when the file does not say
  std::string program;  // "berthd" or "berth"
  // "berthd (pid 123)", "berth (pid 123)", "berthd (pid unknown)".
  std::string ToString() const;
};

class RootLock {
 public:
  // Creates `root` (0700) if missing, takes its lock without waiting and records this process
  // as `program` in it. kUnavailable when another process holds it; the message names the
  // holder ("another berthd (pid 123) is already running on root …"). Errors of open/flock/write
  // otherwise.
  static Result<RootLock> Acquire(const std::filesystem::path& root, std::string_view program);

  // The current holder, or nullopt when nobody holds the lock (or the root has no lock file).
  // Probes with a shared lock that it releases at once; does not create anything.
  static Result<std::optional<LockHolder>> CurrentHolder(const std::filesystem::path& root);

  RootLock(RootLock&&) = default;
  RootLock& operator=(RootLock&&) = default;
  // Releases the lock (closing the file); the content is left for the next holder to replace.
  ~RootLock() = default;

  const std::filesystem::path& path() const { return path_; }

 private:
  RootLock(UniqueFd fd, std::filesystem::path path) : fd_(std::move(fd)), path_(std::move(path)) {}

  UniqueFd fd_;
  std::filesystem::path path_;
};

}  // namespace berth::stack
