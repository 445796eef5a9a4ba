#!/usr/bin/env bash
# Configures and builds berth in ./build (or $BERTH_BUILD_DIR). Warnings are errors.
# Arguments name the targets to build (e.g. `build.sh berth berthd`); none builds everything,
# the tests included.
# BERTH_SANITIZE=1 configures a clang ASan+UBSan build with the libFuzzer targets instead
# (BERTH_SANITIZE and BERTH_FUZZ; use its own $BERTH_BUILD_DIR, e.g. build-asan).
# BERTH_CI_BUILD=1 configures a build for one clean run, as scripts/test.sh's (unity test
# executables, -g0, -g1 in the sanitizer build; see BERTH_CI_BUILD in CMakeLists.txt): about
# half the CPU of a clean build, slower to rebuild after an edit. Both settings take effect when the directory is first configured.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BERTH_BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
options=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DBERTH_WERROR=ON)
if [ "${BERTH_SANITIZE:-0}" = 1 ]; then
  options+=(-DCMAKE_CXX_COMPILER=clang++ -DBERTH_SANITIZE=ON -DBERTH_FUZZ=ON)
fi
if [ "${BERTH_CI_BUILD:-0}" = 1 ]; then
  options+=(-DBERTH_CI_BUILD=ON)
fi
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" "${options[@]}"
fi
targets=()
for target in "$@"; do targets+=(--target "$target"); done
cmake --build "$build_dir" --parallel "$(nproc)" "${targets[@]}"
