// File: berth/snapshot/mount.h
//
// Mount describes one mount(2) call the way containerd does: a filesystem type, a source and a
// list of options mixing flags ("ro", "rbind", "nosuid") with filesystem data ("lowerdir=…").
// Snapshotters return Mounts; the caller (a runtime, `berth mount`, a test) performs them with
// MountAll() and undoes them with UnmountAll() or a ScopedMount.
//
//   BERTH_ASSIGN_OR_RETURN(std::vector<Mount> mounts, snapshotter.Mounts(key));
//   BERTH_ASSIGN_OR_RETURN(ScopedMount mounted, ScopedMount::Create(mounts, target));
//   … read target …   // unmounted when `mounted` is destroyed
//
// Supported types: "bind" (options "bind" or "rbind", plus "ro" for a read-only bind, done as a
// second MS_REMOUNT|MS_BIND|MS_RDONLY call because the kernel ignores MS_RDONLY on the first) and
// any filesystem type such as "overlay", whose non-flag options become the mount data string.
// The data string must fit in one page (the kernel copies at most one); longer data fails with
// kResourceExhausted before anything is mounted.
//
// All functions need CAP_SYS_ADMIN (kPermissionDenied without it) and block on the kernel.
// Thread safety: free functions, safe to call from any thread; mounts are process-wide state.
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "berth/base/result.h"

namespace berth::snapshot {

struct Mount {
  std::string type;    // "bind", "overlay", …
  std::string source;  // a directory for "bind"; "overlay" for overlay
  std::vector<std::string> options;

  friend bool operator==(const Mount&, const Mount&) = default;
};

// The length of the data string `options` make when none is a flag ("a,b,c"): what the
// one-page limit above applies to.
size_t MountDataLength(const std::vector<std::string>& options);

// "overlay /src lowerdir=a:b,index=off": for messages and logs.
std::string ToString(const Mount& mount);

// Performs `mounts` in order on `target` (each stacks on the previous). If one fails, those
// already made are unmounted and the error returned. REQUIRES: `target` is an existing directory.
Result<void> MountAll(std::span<const Mount> mounts, const std::filesystem::path& target);

// Unmounts the topmost mount on `target`. kFailedPrecondition when `target` is not a mount point.
Result<void> Unmount(const std::filesystem::path& target);

// Unmounts every mount stacked on `target`; succeeds when nothing is mounted there. Retries a
// busy mount briefly, then detaches it lazily (MNT_DETACH) so the caller is never stuck.
Result<void> UnmountAll(const std::filesystem::path& target);

// Mounts on construction, unmounts (UnmountAll) on destruction, even when a test or an apply
// fails half way. Move-only.
class ScopedMount {
 public:
  static Result<ScopedMount> Create(std::span<const Mount> mounts,
                                    const std::filesystem::path& target);
  ScopedMount(ScopedMount&& other) noexcept;
  ScopedMount& operator=(ScopedMount&& other) noexcept;
  ScopedMount(const ScopedMount&) = delete;
  ScopedMount& operator=(const ScopedMount&) = delete;
  ~ScopedMount();

  const std::filesystem::path& target() const { return target_; }
  // Unmounts now and reports failures (the destructor ignores them).
  Result<void> Release();

 private:
  explicit ScopedMount(std::filesystem::path target) : target_(std::move(target)) {}
  std::filesystem::path target_;  // empty once released or moved from
};

}  // namespace berth::snapshot
