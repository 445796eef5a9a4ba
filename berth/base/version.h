// File: berth/base/version.h
//
// berth's version, in one place: the number is CMake's project(VERSION) and the revision is the
// source tree's git commit when it was configured (`git describe --always --dirty`), or what the
// BERTH_GIT_REVISION cache variable says (a build from a tarball, the Debian package), or
// "unknown". Both are compiled into version.cc alone, so a new revision rebuilds one object. A
// development build keeps the revision of its last cmake run.
#pragma once

#include <string_view>

namespace berth {

// e.g. "0.1.0".
std::string_view Version();
// e.g. "e14ee32" or "e14ee32-dirty"; "unknown" when neither git nor the build said.
std::string_view GitRevision();

}  // namespace berth
