#!/usr/bin/env bash
# Command (b): installs the dependencies, builds, and runs the whole test suite through ctest.
# Unit and integration tests alike; integration tests start real registries on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
build_dir=${BERTH_BUILD_DIR:-build}
cd "$build_dir"
start=$(date +%s)
ctest --output-on-failure --parallel "$(nproc)" --timeout 600 "$@"
echo "test.sh: ctest took $(( $(date +%s) - start )) s"
