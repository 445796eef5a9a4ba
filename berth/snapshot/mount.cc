#include "berth/snapshot/mount.h"

#include <fmt/format.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string_view>
#include <thread>

namespace berth::snapshot {
namespace {

struct FlagOption {
  std::string_view name;
  bool clear;  // true: the option removes the flag ("rw" removes MS_RDONLY)
  unsigned long flag;
};

constexpr FlagOption kFlagOptions[] = {
    {"ro", false, MS_RDONLY},
    {"rw", true, MS_RDONLY},
    {"bind", false, MS_BIND},
    {"rbind", false, MS_BIND | MS_REC},
    {"nosuid", false, MS_NOSUID},
    {"suid", true, MS_NOSUID},
    {"nodev", false, MS_NODEV},
    {"dev", true, MS_NODEV},
    {"noexec", false, MS_NOEXEC},
    {"exec", true, MS_NOEXEC},
    {"sync", false, MS_SYNCHRONOUS},
    {"async", true, MS_SYNCHRONOUS},
    {"noatime", false, MS_NOATIME},
    {"atime", true, MS_NOATIME},
    {"nodiratime", false, MS_NODIRATIME},
    {"diratime", true, MS_NODIRATIME},
    {"relatime", false, MS_RELATIME},
    {"norelatime", true, MS_RELATIME},
    {"strictatime", false, MS_STRICTATIME},
};

struct ParsedOptions {
  unsigned long flags = 0;
  std::string data;
};

ParsedOptions ParseOptions(const std::vector<std::string>& options) {
  ParsedOptions parsed;
  for (const std::string& option : options) {
    bool is_flag = false;
    for (const FlagOption& flag : kFlagOptions) {
      if (option == flag.name) {
        if (flag.clear) {
          parsed.flags &= ~flag.flag;
        } else {
          parsed.flags |= flag.flag;
        }
        is_flag = true;
        break;
      }
    }
    if (is_flag) continue;
    if (!parsed.data.empty()) parsed.data += ',';
    parsed.data += option;
  }
  return parsed;
}

Error MountError(int errnum, const Mount& mount, const std::filesystem::path& target) {
  return ErrnoError(errnum, fmt::format("mount {} on {}", ToString(mount), target.string()));
}

Result<void> MountOne(const Mount& mount, const std::filesystem::path& target) {
  ParsedOptions parsed = ParseOptions(mount.options);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (static_cast<long>(parsed.data.size()) + 1 > page_size) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("mount {} on {}: the option string is {} bytes, but the kernel "
                            "accepts at most {} (one page); use fewer layers or shorter paths",
                            mount.type, target.string(), parsed.data.size(), page_size - 1));
  }
  const bool is_bind = mount.type == "bind" || (parsed.flags & MS_BIND) != 0;
  if (is_bind) {
    unsigned long bind_flags = MS_BIND | (parsed.flags & MS_REC);
    if (::mount(mount.source.c_str(), target.c_str(), nullptr, bind_flags, nullptr) != 0) {
      return Fail(MountError(errno, mount, target));
    }
    // The kernel ignores every flag but MS_BIND|MS_REC on the first call; per-mount flags such
    // as read-only take a remount of the new bind mount.
    unsigned long remount_flags = parsed.flags & ~(MS_BIND | MS_REC);
    if (remount_flags != 0) {
      if (::mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | remount_flags,
                  nullptr) != 0) {
        int saved = errno;
        ::umount2(target.c_str(), MNT_DETACH);
        return Fail(MountError(saved, mount, target).WithContext("remount with flags"));
      }
    }
    return Ok();
  }
  if (::mount(mount.source.c_str(), target.c_str(), mount.type.c_str(), parsed.flags,
              parsed.data.empty() ? nullptr : parsed.data.c_str()) != 0) {
    return Fail(MountError(errno, mount, target));
  }
  return Ok();
}

}  // namespace

std::string ToString(const Mount& mount) {
  std::string out = mount.type + " " + mount.source;
  for (size_t i = 0; i < mount.options.size(); ++i) {
    out += i == 0 ? ' ' : ',';
    out += mount.options[i];
  }
  return out;
}

Result<void> MountAll(std::span<const Mount> mounts, const std::filesystem::path& target) {
  for (size_t i = 0; i < mounts.size(); ++i) {
    if (auto mounted = MountOne(mounts[i], target); !mounted) {
      for (size_t j = 0; j < i; ++j) (void)Unmount(target);
      return mounted;
    }
  }
  return Ok();
}

Result<void> Unmount(const std::filesystem::path& target) {
  while (::umount2(target.c_str(), UMOUNT_NOFOLLOW) != 0) {
    if (errno == EINTR) continue;
    if (errno == EINVAL) {
      return Fail(ErrorCode::kFailedPrecondition,
                  fmt::format("unmount {}: not a mount point", target.string()));
    }
    if (errno == EBUSY) {
      return Fail(
          ErrorCode::kUnavailable,
          fmt::format("unmount {}: busy (a process still uses it); retry later", target.string()));
    }
    return Fail(ErrnoError(errno, fmt::format("unmount {}", target.string())));
  }
  return Ok();
}

Result<void> UnmountAll(const std::filesystem::path& target) {
  constexpr int kBusyRetries = 50;
  int busy = 0;
  while (true) {
    auto unmounted = Unmount(target);
    if (unmounted) continue;
    switch (unmounted.error().code()) {
      case ErrorCode::kFailedPrecondition:  // nothing (left) mounted
      case ErrorCode::kNotFound:            // no such target
        return Ok();
      case ErrorCode::kUnavailable:
        if (++busy < kBusyRetries) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          continue;
        }
        if (::umount2(target.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0) {
          return Fail(ErrnoError(errno, fmt::format("detach {}", target.string())));
        }
        busy = 0;
        continue;
      default:
        return unmounted;
    }
  }
}

Result<ScopedMount> ScopedMount::Create(std::span<const Mount> mounts,
                                        const std::filesystem::path& target) {
  BERTH_RETURN_IF_ERROR(MountAll(mounts, target));
  return ScopedMount(target);
}

ScopedMount::ScopedMount(ScopedMount&& other) noexcept : target_(std::move(other.target_)) {
  other.target_.clear();
}

ScopedMount& ScopedMount::operator=(ScopedMount&& other) noexcept {
  if (this != &other) {
    (void)Release();
    target_ = std::move(other.target_);
    other.target_.clear();
  }
  return *this;
}

ScopedMount::~ScopedMount() { (void)Release(); }

Result<void> ScopedMount::Release() {
  if (target_.empty()) return Ok();
  std::filesystem::path target = std::move(target_);
  target_.clear();
  return UnmountAll(target);
}

size_t MountDataLength(const std::vector<std::string>& options) {
  size_t length = 0;
  for (const std::string& option : options) length += option.size() + 1;
  return length == 0 ? 0 : length - 1;
}

}  // namespace berth::snapshot
