// File: berth/stack/about.h
//
// What `berth version` and `berthd --version` print: the program, berth's version and source
// revision (base/version.h), and the snapshotters this build has (config::kSnapshotterKinds),
// one per line:
//
//   berthd 0.1.0
//   revision: e14ee32a1b2c
//   snapshotters: overlayfs native
#pragma once

#include <string>
#include <string_view>

namespace berth::stack {

// The lines above for `program` ("berth", "berthd"), each ending in '\n'.
std::string About(std::string_view program);

}  // namespace berth::stack
