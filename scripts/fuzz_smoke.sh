#!/usr/bin/env bash
# The fuzz smoke CI runs (scripts/test.sh, beside the sanitizer suite): every libFuzzer target
# of a BERTH_FUZZ build for BERTH_FUZZ_SECONDS (default 30), $(nproc) targets at a time, each on a
# scratch copy of its checked-in corpus. Any sanitizer report, failed invariant, crash, hang or
# leak fails it; the inputs stay in the scratch directory the output names (fuzz/README.md).
# Usage: scripts/fuzz_smoke.sh [build dir with fuzz/]   (default build-asan)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
fuzz_dir=${1:-build-asan}/fuzz
if ! ls "$fuzz_dir"/berth_fuzz_* >/dev/null 2>&1; then
  echo "fuzz_smoke.sh: no fuzz targets in $fuzz_dir: build them first" \
    "(BERTH_BUILD_DIR=build-asan BERTH_SANITIZE=1 scripts/build.sh)"
  exit 1
fi
# New inputs stay out of the checkout.
fuzz_seconds=${BERTH_FUZZ_SECONDS:-30}
scratch=$(mktemp -d /tmp/berth-fuzz-smoke.XXXXXX)
fuzz_one() {
  local name=$1 dict=()
  mkdir -p "$scratch/$name/corpus" "$scratch/$name/artifacts"
  cp -r "fuzz/corpus/$name/." "$scratch/$name/corpus/"
  case $name in
    image | token) dict=(-dict="$repo/fuzz/dict/json.dict") ;;
    config) dict=(-dict="$repo/fuzz/dict/toml.dict") ;;
    reference) dict=(-dict="$repo/fuzz/dict/reference.dict") ;;
    challenge) dict=(-dict="$repo/fuzz/dict/challenge.dict") ;;
  esac
  if "$fuzz_dir/berth_fuzz_$name" -max_total_time="$fuzz_seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
      -artifact_prefix="$scratch/$name/artifacts/" "$scratch/$name/corpus" \
      >"$scratch/$name/log" 2>&1; then
    echo "fuzz_smoke.sh: fuzz $name: $(grep -E '^#[0-9]+.*DONE' "$scratch/$name/log" | tail -1)"
  else
    tail -n 60 "$scratch/$name/log"
    echo "fuzz_smoke.sh: fuzz $name FAILED; inputs in $scratch/$name/artifacts/ (see fuzz/README.md)"
    touch "$scratch/$name/failed"
  fi
}
start=$(date +%s)
running=0
for corpus in fuzz/corpus/*/; do
  if ((running >= $(nproc))); then
    wait -n || true
    running=$((running - 1))
  fi
  fuzz_one "$(basename "$corpus")" &
  running=$((running + 1))
done
wait
echo "fuzz_smoke.sh: fuzz smoke took $(( $(date +%s) - start )) s"
failed=
for marker in "$scratch"/*/failed; do
  if [ -e "$marker" ]; then failed+="$(basename "$(dirname "$marker")") "; fi
done
if [ -n "$failed" ]; then
  echo "fuzz_smoke.sh: fuzz findings in: $failed"
  exit 1
fi
rm -rf "$scratch"
