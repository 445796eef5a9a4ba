#!/usr/bin/env bash
# Configures and builds berth in ./build (or $BERTH_BUILD_DIR). Warnings are errors.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BERTH_BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBERTH_WERROR=ON
fi
cmake --build "$build_dir" --parallel "$(nproc)"
