#!/usr/bin/env bash
# berth's micro-benchmarks (issue 7): builds berth_micro_bench (bench/micro/, Google Benchmark) in
# Release in its own build directory, runs it with 3 repetitions (aggregates only), prints the
# machine's facts and appends facts and output to bench/results.md under a dated heading.
# Figures only: not a test. Stages: SHA-256, gzip inflate (ISA-L, zlib, libdeflate), zstd, tar
# apply of 5,000 small files onto tmpfs, metadata DB writes (see bench/micro/micro_bench.cc).
#
#   bash bench/micro.sh [--no-append] [berth_micro_bench flags, e.g. --benchmark_filter=sha256]
#
# BERTH_MICRO_BUILD_DIR: the build directory (default build-micro). Run as root so that the tar
# apply keeps ownership as the unpacker does.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
build=${BERTH_MICRO_BUILD_DIR:-$repo/build-micro}
append=1
args=()
for arg in "$@"; do
  case $arg in
    --no-append) append=0 ;;
    -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
    *) args+=("$arg") ;;
  esac
done

build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
if [ "$build_type" != Release ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBERTH_BUILD_TESTS=ON >/dev/null
fi
cmake --build "$build" --target berth_micro_bench -- -j "$(nproc)"

commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- berth bench/micro || echo "+dirty")
facts="$(date -u '+%Y-%m-%d %H:%M UTC'), berth $commit, $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r), $(free -g | awk '/Mem:/ {print $2}') GB RAM, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$facts"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$build/bench/micro/berth_micro_bench" --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true --benchmark_color=false "${args[@]}" 2>&1 | tee "$out"
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average at end: $load_end"

if [ $append = 1 ]; then
  {
    echo
    echo "## $facts, at end $load_end: micro-benchmarks (bench/micro.sh)"
    echo
    echo '```text'
    cat "$out"
    echo '```'
    echo
    echo "Mean, median, stddev and cv of 3 repetitions, one thread each. MB and comp_MB are 10^6 bytes per second of uncompressed and compressed data; bytes_per_second uses binary prefixes. sha256/inflate/zstd rates are per CPU-second; tar_apply and metadata rates per wall second, and entries_per_cpu_s per CPU-second of the applying thread (or of the tar child). The machine's 2 cores are shared with other work (load averages in the heading), so wall times are noisy and run well above the CPU times."
  } >>bench/results.md
  echo "appended to bench/results.md"
fi
