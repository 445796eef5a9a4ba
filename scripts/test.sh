#!/usr/bin/env bash
# Command (b): installs the dependencies, builds, and runs the whole test suite through ctest.
# Unit and integration tests alike; integration tests start real registries on loopback. Then
# (as root) the unit-labelled tests once more, as nobody in a network namespace without loopback.
#
# The clang-tidy gate (scripts/lint.sh tidy) must pass too.
# Then, unless BERTH_TEST_QUICK=1 (for local iteration), the hardening checks CI runs:
#   1. the sanitizer build (clang, ASan + UBSan, BERTH_SANITIZE + BERTH_FUZZ, in build-asan or
#      $BERTH_ASAN_BUILD_DIR) and the ctest suite under it, the fuzz corpora included (all but
#      the kill -9 loop, crash_test);
#   2. every libFuzzer target for BERTH_FUZZ_SECONDS (default 30) on a copy of its checked-in
#      corpus. Any sanitizer report, failed invariant, crash, hang or leak fails the run.
# Extra arguments go to both ctest runs.
#
# Scheduling, for CI's two cores: the builds are BERTH_CI_BUILD builds (unity test executables,
# -g0 with g++ and -g1 in the sanitizer build; about half the CPU of a development build;
# BERTH_CI_BUILD=0 turns that off). Both suites mostly wait on registries, sockets and slowed
# proxies, so they run BERTH_SUITE_JOBS tests at once (default twice the cores) and, beside the
# first suite, the sanitizer build (nice 5) and clang-tidy (nice 10) take the idle cores; tidy goes on beside the sanitizer suite if it has
# to, and its verdict is read after that suite (after the unit tests with BERTH_TEST_QUICK=1).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bash scripts/setup.sh
# The formatting gate first: it takes a second and needs no build.
bash scripts/lint.sh format
export BERTH_CI_BUILD=${BERTH_CI_BUILD:-1}
suite_jobs=${BERTH_SUITE_JOBS:-$(($(nproc) * 2))}
start=$(date +%s)
bash scripts/build.sh
echo "test.sh: build took $(( $(date +%s) - start )) s"
build_dir=${BERTH_BUILD_DIR:-build}
asan_dir=${BERTH_ASAN_BUILD_DIR:-build-asan}

# Beside the first ctest: the sanitizer build first (the sanitizer suite waits for it), then
# clang-tidy, which nothing waits for. Each in its own process group (setsid), so a failing
# suite stops it with everything it started.
asan_pid=
if [ "${BERTH_TEST_QUICK:-0}" != 1 ]; then
  asan_log=$(mktemp /tmp/berth-asan-build.XXXXXX)
  asan_start=$(date +%s)
  BERTH_BUILD_DIR=$asan_dir BERTH_SANITIZE=1 setsid nice -n 5 bash scripts/build.sh \
    >"$asan_log" 2>&1 &
  asan_pid=$!
fi
tidy_log=$(mktemp /tmp/berth-tidy.XXXXXX)
setsid nice -n 10 bash scripts/lint.sh tidy >"$tidy_log" 2>&1 &
tidy_pid=$!
trap '[ -n "$asan_pid" ] && kill -- -"$asan_pid" 2>/dev/null
      [ -n "$tidy_pid" ] && kill -- -"$tidy_pid" 2>/dev/null; true' EXIT
tidy_verdict() {
  local status=0
  wait "$tidy_pid" || status=$?
  tidy_pid=
  cat "$tidy_log"
  rm -f "$tidy_log"
  if [ "$status" != 0 ]; then
    echo "test.sh: the clang-tidy gate failed (above)"
    exit 1
  fi
}

start=$(date +%s)
(cd "$build_dir" && ctest --output-on-failure --parallel "$suite_jobs" --timeout 600 "$@")
echo "test.sh: ctest took $(( $(date +%s) - start )) s"

# The `unit` label promises that a test needs nothing: no root, no other process, no network
# (cmake/BerthHelpers.cmake, berth_test). Run those tests again as nobody in a network namespace
# without even loopback, so a unit test that starts to need more fails here until its berth_test
# lists what it needs.
nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all)
if [ "$(id -u)" != 0 ]; then
  echo "test.sh: not root: skipped the check that unit tests run unprivileged without a network"
elif ! "${nobody[@]}" test -r "$build_dir/CTestTestfile.cmake"; then
  # A checkout under a private directory (mktemp -d, /root) cannot be read by nobody.
  echo "test.sh: skipped the check that unit tests run unprivileged without a network: user" \
    "nobody cannot read $repo/$build_dir (make it and its parents world-readable: chmod o+rx)"
else
  unit_tmp=$(mktemp -d /tmp/berth-unit.XXXXXX)
  chmod 1777 "$unit_tmp"
  # ctest writes its logs to Testing/Temporary: lend that directory to nobody for the run.
  mkdir -p "$build_dir/Testing/Temporary"
  chown -R 65534:65534 "$build_dir/Testing/Temporary"
  start=$(date +%s)
  unit_status=0
  (cd "$build_dir" && TMPDIR=$unit_tmp unshare --net "${nobody[@]}" \
    ctest -L unit --output-on-failure --parallel "$(nproc)" --timeout 600 "$@") || unit_status=$?
  chown -R 0:0 "$build_dir/Testing/Temporary"
  rm -rf "$unit_tmp"
  echo "test.sh: ctest -L unit as nobody without a network took $(( $(date +%s) - start )) s"
  if [ "$unit_status" != 0 ]; then
    echo "test.sh: a unit-labelled test failed without root or network: list what it needs in" \
      "its berth_test LABELS (cmake/BerthHelpers.cmake)"
    exit 1
  fi
fi

if [ -z "$asan_pid" ]; then
  tidy_verdict
  echo "test.sh: BERTH_TEST_QUICK=1: skipped the sanitizer build, its ctest and the fuzz smoke"
  exit 0
fi

if ! wait "$asan_pid"; then
  asan_pid=
  tail -n 80 "$asan_log"
  echo "test.sh: the sanitizer build failed (log: $asan_log)"
  exit 1
fi
asan_pid=
echo "test.sh: sanitizer build took $(( $(date +%s) - asan_start )) s (beside the first ctest)"
rm -f "$asan_log"
# The first suite's timings (same test names; ctest keeps them in
# Testing/Temporary/CTestCostData.txt) order this one longest first, so no long test starts last.
mkdir -p "$asan_dir/Testing/Temporary"
if [ ! -e "$asan_dir/Testing/Temporary/CTestCostData.txt" ]; then
  cp "$build_dir/Testing/Temporary/CTestCostData.txt" "$asan_dir/Testing/Temporary/" || true
fi
start=$(date +%s)
# Not under the sanitizers: crash_test, the kill -9 loop. What it checks is the store on disk
# after a SIGKILL, which a killed process cannot report on; it is a third of the suite's time.
echo "test.sh: under ASan+UBSan, all but crash_test (the kill -9 loop; it ran in the first suite)"
(cd "$asan_dir" && ctest --output-on-failure --parallel "$suite_jobs" --timeout 900 \
  --exclude-regex '^crash_test\.' "$@")
echo "test.sh: ctest under ASan+UBSan took $(( $(date +%s) - start )) s"

# The fuzzers should have the cores to themselves: tidy's verdict first.
tidy_verdict

# Fuzz smoke: a fixed time per target, $(nproc) targets at a time, each on a scratch copy of its
# corpus (new inputs stay out of the checkout). Crash/leak/timeout inputs are kept in the
# scratch directory the log names.
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
  if "$asan_dir/fuzz/berth_fuzz_$name" -max_total_time="$fuzz_seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
      -artifact_prefix="$scratch/$name/artifacts/" "$scratch/$name/corpus" \
      >"$scratch/$name/log" 2>&1; then
    echo "test.sh: fuzz $name: $(grep -E '^#[0-9]+.*DONE' "$scratch/$name/log" | tail -1)"
  else
    tail -n 60 "$scratch/$name/log"
    echo "test.sh: fuzz $name FAILED; inputs in $scratch/$name/artifacts/ (see fuzz/README.md)"
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
echo "test.sh: fuzz smoke took $(( $(date +%s) - start )) s"
failed=
for marker in "$scratch"/*/failed; do
  if [ -e "$marker" ]; then failed+="$(basename "$(dirname "$marker")") "; fi
done
if [ -n "$failed" ]; then
  echo "test.sh: fuzz findings in: $failed"
  exit 1
fi
rm -rf "$scratch"
