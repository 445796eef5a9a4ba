// File: berth/cri/full_disk.h
//
// A full disk shows up deep inside a pull as "write blob …: No space left on device". Told to a
// kubelet or a person, that should also say which filesystem filled up and what to do about it:
// ExplainFullDisk adds that, at the boundary where the error leaves berthd (and where the CLI,
// working on the root itself, prints it: one explanation for both).
//
// Thread safety: a free function; calls statvfs(2).
#pragma once

#include <filesystem>
#include <span>

#include "berth/base/error.h"

namespace berth::cri {

// Returns `error` with a hint appended when it is a full disk or quota (kResourceExhausted whose
// message carries ENOSPC's or EDQUOT's text, or SQLite's "database or disk is full"): the
// fullest filesystem among those holding `directories` (berth's root, its snapshot root), its
// free and total bytes, and what to do (free space there, e.g. `berth rmi`, or move the root
// to a larger filesystem). Any other error is returned unchanged. Directories that cannot be
// measured are skipped.
Error ExplainFullDisk(const Error& error, std::span<const std::filesystem::path> directories);

}  // namespace berth::cri
