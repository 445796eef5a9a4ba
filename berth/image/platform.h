// File: berth/image/platform.h
//
// Platform parsing, normalization and matching, with containerd's vocabulary: "linux/amd64",
// "linux/arm64/v8", "linux/arm/v7". Normalization makes equal what registries spell differently:
// x86_64 → amd64, aarch64 → arm64, arm64 without variant → arm64/v8, armhf → arm/v7,
// armel → arm/v6, arm without variant → arm/v7, amd64/v1 → amd64.
//
// Thread safety: pure functions.
#pragma once

#include <span>
#include <string_view>

#include "berth/base/result.h"
#include "berth/image/descriptor.h"

namespace berth::image {

// Parses "os/arch[/variant]" and normalizes it. A single part is an OS when it is linux,
// windows, darwin or freebsd (that OS on HostPlatform()'s architecture), else an architecture
// on linux.
// kInvalidArgument for empty parts or more than three parts.
Result<Platform> ParsePlatform(std::string_view text);

// Returns `platform` with os lowercased and architecture/variant normalized as described above.
Platform Normalize(Platform platform);

// The platform berth runs on (linux and the architecture it was compiled for).
Platform HostPlatform();

// How well `candidate` serves `wanted`: nullopt when it cannot run there; lower is better
// (0 = exact). arm/vN also runs arm/vM for M < N, ranked by distance.
std::optional<int> MatchRank(const Platform& wanted, const Platform& candidate);

}  // namespace berth::image
