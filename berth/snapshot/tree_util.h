// File: berth/snapshot/tree_util.h
//
// Directory-tree helpers the snapshotters share: a faithful tree copy (for the native
// snapshotter), disk usage, recursive removal and filesystem sync. They never follow symlinks
// and never cross into what a symlink points at. All of them block on disk I/O.
// Thread safety: free functions without shared state.
#pragma once

#include <filesystem>
#include <vector>

#include "berth/base/result.h"
#include "berth/snapshot/snapshotter.h"

namespace berth::snapshot {

// Copies the contents of directory `source` into the existing, empty directory `destination`,
// then gives `destination` the owner, mode, xattrs and timestamps of `source`. Preserves file
// types (regular files, directories, symlinks, character and block devices, fifos, sockets),
// owners, modes (including setuid/setgid/sticky), xattrs (trusted.* and security.* need
// CAP_SYS_ADMIN), hard links between files inside the tree, and access/modification times.
// File data is reflinked when the filesystem supports it, else copied in the kernel; holes of
// sparse files stay holes (only what SEEK_DATA reports is copied).
// Errors name the path that failed; a partial copy is left for the caller to remove.
Result<void> CopyTree(const std::filesystem::path& source,
                      const std::filesystem::path& destination);

// Allocated bytes (st_blocks * 512) and inodes of everything under `directory`, including
// itself, each inode counted once however many hard links it has. The walk stays on the
// filesystem of `directory`: mounts below it (the erofs snapshotter's layer mounts) and their
// contents are not counted. Fails on the first entry that cannot be read (kNotFound for a
// missing `directory`).
Result<Usage> DiskUsage(const std::filesystem::path& directory);

// The same count over several trees together (an inode linked from two of them counts once, as
// `du -s a b` does), best effort, for trees that change while they are walked (CRI's
// ImageFsInfo over the content store and the snapshot root): entries that vanish or cannot be
// read are left out, and so is a missing directory.
Usage DiskUsageBestEffort(const std::vector<std::filesystem::path>& directories);

// Removes `path` and everything under it; succeeds when it does not exist. When that fails with
// EACCES or EPERM, the tree's directories are made writable and the removal is tried once more.
Result<void> RemoveTree(const std::filesystem::path& path);

// syncfs(2) of the filesystem holding `path`, making every file written there durable.
Result<void> SyncFilesystem(const std::filesystem::path& path);

}  // namespace berth::snapshot
