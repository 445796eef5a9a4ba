#!/usr/bin/env bash
# Command (b): installs the dependencies, builds, and runs every test through ctest, unit and
# integration alike (integration tests start real registries on loopback, berthd, containerd).
# Every test runs once:
#   - under ASan + UBSan (clang, BERTH_SANITIZE + BERTH_FUZZ, in build-asan or
#     $BERTH_ASAN_BUILD_DIR): the `unit`-labelled tests as nobody in a network namespace without
#     even loopback (as root: not root, no network is what `unit` promises), the rest as root;
#   - but the kill -9 loop (crash_test), in the optimized g++ build: what it checks is the store
#     on disk after a SIGKILL, which a killed process cannot report on, and its 50 pulls would
#     take the sanitizer suite a third longer.
# Also: the formatting and clang-tidy gates (scripts/lint.sh), the Debian package built from the
# g++ build, installed, run and purged (scripts/package_check.sh, as root), and the fuzz smoke
# (scripts/fuzz_smoke.sh: every libFuzzer target for BERTH_FUZZ_SECONDS, default 30, on a copy of
# its corpus). Any sanitizer report, failed invariant, crash, hang or leak fails the run.
# Extra arguments go to every ctest run.
#
# BERTH_TEST_QUICK=1 (local iteration): the whole suite in the g++ build instead (then the unit
# tests again as nobody), no sanitizer build, no fuzz smoke.
#
# Scheduling, for CI's two cores (the sanitizer build is the longest step, so everything else is
# arranged around it): the g++ build makes only what runs from it (berth, berthd, the docs,
# berth-seed for the package's demo, crash_test); then the sanitizer build (nice 5) and clang-tidy
# (nice 10) run beside the kill -9 loop and the package check, which mostly wait. The fuzz smoke
# (nice 10) runs beside the sanitizer suite, whose tests mostly wait on registries, sockets and
# slowed proxies, BERTH_SUITE_JOBS at once (default twice the cores). Both builds are
# BERTH_CI_BUILD builds (unity batches, -g0 with g++ and -g1 with clang; BERTH_CI_BUILD=0 turns
# that off).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bash scripts/setup.sh
# The formatting gate first: it takes a second and needs no build.
bash scripts/lint.sh format
export BERTH_CI_BUILD=${BERTH_CI_BUILD:-1}
quick=${BERTH_TEST_QUICK:-0}
suite_jobs=${BERTH_SUITE_JOBS:-$(($(nproc) * 2))}
build_dir=${BERTH_BUILD_DIR:-build}
asan_dir=${BERTH_ASAN_BUILD_DIR:-build-asan}

start=$(date +%s)
if [ "$quick" = 1 ]; then
  bash scripts/build.sh
else
  bash scripts/build.sh berth berthd berth_docs berth-seed berth_crash_test
fi
echo "test.sh: the g++ build took $(( $(date +%s) - start )) s"

# Beside what follows: the sanitizer build (its suite waits for it), then clang-tidy, which
# nothing waits for. Each in its own process group (setsid), so a failure stops it with
# everything it started.
asan_pid=
if [ "$quick" != 1 ]; then
  asan_log=$(mktemp /tmp/berth-asan-build.XXXXXX)
  asan_start=$(date +%s)
  BERTH_BUILD_DIR=$asan_dir BERTH_SANITIZE=1 setsid nice -n 5 bash scripts/build.sh \
    >"$asan_log" 2>&1 &
  asan_pid=$!
fi
tidy_log=$(mktemp /tmp/berth-tidy.XXXXXX)
setsid nice -n 10 bash scripts/lint.sh tidy >"$tidy_log" 2>&1 &
tidy_pid=$!
fuzz_pid=
trap '[ -n "$asan_pid" ] && kill -- -"$asan_pid" 2>/dev/null
      [ -n "$tidy_pid" ] && kill -- -"$tidy_pid" 2>/dev/null
      [ -n "$fuzz_pid" ] && kill -- -"$fuzz_pid" 2>/dev/null; true' EXIT
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

# suite <build dir> <what> <ctest arguments...>: one ctest run as root, timed.
suite() {
  local dir=$1 what=$2 began
  shift 2
  began=$(date +%s)
  (cd "$dir" && ctest --output-on-failure --parallel "$suite_jobs" "$@")
  echo "test.sh: $what took $(( $(date +%s) - began )) s"
}

# unit_as_nobody <build dir>: the `unit` label promises that a test needs nothing: no root, no
# other process, no network (cmake/BerthHelpers.cmake, berth_test). Those tests run as nobody in
# a network namespace without even loopback, so a unit test that starts to need more fails here
# until its berth_test lists what it needs.
unit_as_nobody() {
  local dir=$1 nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all)
  local unit_tmp began unit_status=0
  if [ "$(id -u)" != 0 ]; then
    echo "test.sh: not root: the unit tests run as this user, with the network"
    suite "$dir" "ctest -L unit" -L unit --timeout 600 "${extra[@]}"
    return
  fi
  if ! "${nobody[@]}" test -r "$dir/CTestTestfile.cmake"; then
    # A checkout under a private directory (mktemp -d, /root) cannot be read by nobody.
    echo "test.sh: user nobody cannot read $repo/$dir: make it and its parents world-readable" \
      "(chmod o+rx); the unit tests run as root instead"
    suite "$dir" "ctest -L unit" -L unit --timeout 600 "${extra[@]}"
    return
  fi
  unit_tmp=$(mktemp -d /tmp/berth-unit.XXXXXX)
  chmod 1777 "$unit_tmp"
  # ctest writes its logs to Testing/Temporary: lend that directory to nobody for the run.
  mkdir -p "$dir/Testing/Temporary"
  chown -R 65534:65534 "$dir/Testing/Temporary"
  began=$(date +%s)
  (cd "$dir" && TMPDIR=$unit_tmp unshare --net "${nobody[@]}" \
    ctest -L unit --output-on-failure --parallel "$(nproc)" --timeout 600 "${extra[@]}") \
    || unit_status=$?
  chown -R 0:0 "$dir/Testing/Temporary"
  rm -rf "$unit_tmp"
  echo "test.sh: ctest -L unit as nobody without a network took $(( $(date +%s) - began )) s"
  if [ "$unit_status" != 0 ]; then
    echo "test.sh: a unit-labelled test failed without root or network: list what it needs in" \
      "its berth_test LABELS (cmake/BerthHelpers.cmake)"
    exit 1
  fi
}

# The Debian package, from the g++ build.
package_check() {
  if [ "$(id -u)" != 0 ]; then
    echo "test.sh: not root: skipped the Debian package check (scripts/package_check.sh)"
    return
  fi
  local began
  began=$(date +%s)
  BERTH_BUILD_DIR=$build_dir bash scripts/package_check.sh
  echo "test.sh: the package check took $(( $(date +%s) - began )) s"
}

extra=("$@")
if [ "$quick" = 1 ]; then
  suite "$build_dir" "ctest" --timeout 600 "${extra[@]}"
  unit_as_nobody "$build_dir"
  package_check
  tidy_verdict
  echo "test.sh: BERTH_TEST_QUICK=1: skipped the sanitizer build, its suite and the fuzz smoke"
  exit 0
fi

suite "$build_dir" "the kill -9 loop (crash_test, g++ build)" -R '^crash_test\.' --timeout 600 \
  "${extra[@]}"
package_check

if ! wait "$asan_pid"; then
  asan_pid=
  tail -n 80 "$asan_log"
  echo "test.sh: the sanitizer build failed (log: $asan_log)"
  exit 1
fi
asan_pid=
echo "test.sh: the sanitizer build took $(( $(date +%s) - asan_start )) s"
rm -f "$asan_log"
# Beside the suite, which mostly waits: the fuzz smoke (nice 10), whose targets run for a fixed
# time whatever CPU they get. Its verdict is read after the suite and tidy's.
fuzz_log=$(mktemp /tmp/berth-fuzz-smoke-log.XXXXXX)
setsid nice -n 10 bash scripts/fuzz_smoke.sh "$asan_dir" >"$fuzz_log" 2>&1 &
fuzz_pid=$!
echo "test.sh: under ASan+UBSan, all but the unit tests (next, as nobody) and crash_test (above)"
suite "$asan_dir" "ctest under ASan+UBSan" -LE unit --exclude-regex '^crash_test\.' \
  --timeout 900 "${extra[@]}"
unit_as_nobody "$asan_dir"

tidy_verdict
fuzz_status=0
wait "$fuzz_pid" || fuzz_status=$?
fuzz_pid=
cat "$fuzz_log"
rm -f "$fuzz_log"
if [ "$fuzz_status" != 0 ]; then
  echo "test.sh: the fuzz smoke failed (above)"
  exit 1
fi
