#include "berth/stack/root_lock.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

namespace berth::stack {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kLockName = "berthd.lock";

// Parses "<pid> <program>\n" (or berthd's older "<pid>\n").
LockHolder ParseHolder(std::string_view text) {
  LockHolder holder{.program = "berthd"};
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  size_t space = text.find(' ');
  std::string_view pid = text.substr(0, space);
  int value = 0;
  auto [end, error] = std::from_chars(pid.data(), pid.data() + pid.size(), value);
  if (error == std::errc() && end == pid.data() + pid.size() && value > 0) holder.pid = value;
  if (space != std::string_view::npos && space + 1 < text.size()) {
    holder.program = std::string(text.substr(space + 1));
  }
  return holder;
}

LockHolder ReadHolder(int fd) {
  char buffer[64] = {};
  ssize_t n = ::pread(fd, buffer, sizeof(buffer) - 1, 0);
  return ParseHolder(n > 0 ? std::string_view(buffer, static_cast<size_t>(n)) : "");
}

}  // namespace

std::string LockHolder::ToString() const {
  return pid > 0 ? fmt::format("{} (pid {})", program, pid)
                 : fmt::format("{} (pid unknown)", program);
}

Result<RootLock> RootLock::Acquire(const fs::path& root, std::string_view program) {
  std::error_code error;
  if (fs::create_directories(root, error)) {
    fs::permissions(root, fs::perms::owner_all, error);
  }
  if (error) return Fail(ErrnoError(error.value(), fmt::format("create {}", root.string())));
  fs::path path = root / kLockName;
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return Fail(ErrnoError(errno, fmt::format("open lock file {}", path.string())));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return Fail(ErrnoError(errno, fmt::format("lock {}", path.string())));
    LockHolder holder = ReadHolder(fd.get());
    // "another berthd" when a berthd meets a berthd; the holder's plain name otherwise.
    std::string who =
        holder.program == program ? "another " + holder.ToString() : holder.ToString();
    std::string doing =
        holder.program == "berthd" ? "is already running on" : "is using (embedded mode)";
    return Fail(ErrorCode::kUnavailable,
                fmt::format("{} {} root {} (lock {} is held); stop it or use another --root", who,
                            doing, root.string(), path.string()));
  }
  std::string content = fmt::format("{} {}\n", ::getpid(), program);
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), content.data(), content.size(), 0) !=
                                           static_cast<ssize_t>(content.size())) {
    return Fail(ErrnoError(errno, fmt::format("write lock file {}", path.string())));
  }
  return RootLock(std::move(fd), std::move(path));
}

Result<std::optional<LockHolder>> RootLock::CurrentHolder(const fs::path& root) {
  fs::path path = root / kLockName;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::optional<LockHolder>();
    return Fail(ErrnoError(errno, fmt::format("open lock file {}", path.string())));
  }
  // A shared lock conflicts only with a holder's exclusive one.
  if (::flock(fd.get(), LOCK_SH | LOCK_NB) == 0) return std::optional<LockHolder>();
  if (errno != EWOULDBLOCK) return Fail(ErrnoError(errno, fmt::format("lock {}", path.string())));
  return std::optional<LockHolder>(ReadHolder(fd.get()));
}

}  // namespace berth::stack
