#!/usr/bin/env bash
# The code gates CI runs (scripts/test.sh runs format before the build and tidy beside the
# first ctest):
#   1. clang-format: every C++ file of the repository formats to itself (.clang-format);
#   2. clang-tidy: the product sources (berth/ and cmd/, tests excluded) pass .clang-tidy, using
#      the compile commands of the build in $BERTH_BUILD_DIR (default build).
# Usage: scripts/lint.sh [format|tidy]   (both without an argument)
# To fix formatting: git ls-files '*.cc' '*.h' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BERTH_BUILD_DIR:-build}
what=${1:-all}

if [ "$what" = all ] || [ "$what" = format ]; then
  mapfile -t files < <(git ls-files '*.cc' '*.h')
  if ! clang-format --dry-run -Werror "${files[@]}" 2>/tmp/berth-format.$$; then
    grep -E '^[^ ].*error:' /tmp/berth-format.$$ | cut -d: -f1 | sort -u | sed 's/^/  /'
    rm -f /tmp/berth-format.$$
    echo "lint: these files are not clang-formatted (run clang-format -i on them)"
    exit 1
  fi
  rm -f /tmp/berth-format.$$
  echo "lint: clang-format: ${#files[@]} files clean"
fi

if [ "$what" = all ] || [ "$what" = tidy ]; then
  if [ ! -f "$build_dir/compile_commands.json" ]; then
    echo "lint: no $build_dir/compile_commands.json: build first (scripts/build.sh)"
    exit 1
  fi
  mapfile -t sources < <(git ls-files 'berth/*.cc' 'cmd/*.cc' | grep -v '_test\.cc$')
  start=$(date +%s)
  # A unity build (BERTH_CI_BUILD) lists only its unity sources: each source they include gets
  # its unity source's command, in a database of the tidy run's own.
  db_dir=$(mktemp -d /tmp/berth-tidy-db.XXXXXX)
  trap 'rm -rf "$db_dir"' EXIT
  python3 - "$build_dir/compile_commands.json" "$db_dir/compile_commands.json" <<'EOF'
import json, re, sys
commands = []
for entry in json.load(open(sys.argv[1])):
    unity = entry["file"]
    if "/Unity/unity_" not in unity:
        commands.append(entry)
        continue
    for source in re.findall(r'^#include "([^"]+)"', open(unity).read(), re.M):
        commands.append(dict(entry, file=source, command=entry["command"].replace(unity, source)))
json.dump(commands, open(sys.argv[2], "w"), indent=0)
EOF
  # One clang-tidy per source, as many at once as there are cores; -quiet keeps a clean run short.
  if ! printf '%s\n' "${sources[@]}" |
      xargs -P "$(nproc)" -n 1 clang-tidy -quiet -p "$db_dir" \
        --extra-arg=-Wno-unknown-warning-option 2>/dev/null; then
    echo "lint: clang-tidy found problems (above); fix them or, for a reasoned exception, add"
    echo "      NOLINT(check-name) with the reason on the line"
    exit 1
  fi
  echo "lint: clang-tidy: ${#sources[@]} sources clean in $(( $(date +%s) - start )) s"
fi
