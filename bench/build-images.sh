#!/usr/bin/env bash
# Builds the benchmark images from real file trees of this machine and serves them from loopback
# registries (one berth-seed, i.e. one Distribution registry, per image), then writes their
# references to $BENCH_WORK/images.env and returns; the registries keep running until
# `bench/build-images.sh --stop`. No network beyond loopback.
#
#   bash bench/build-images.sh [--quick] [--stop]
#
# Images (layer = one directory, placed at its own path; mtime 0, uid/gid 0, so the same
# directory always makes the same layer digest, whichever seed built it):
#   large        5 gzip layers: /usr/lib/gcc /usr/bin /usr/include /usr/lib/python3.11 /usr/share/doc
#   large-zstd   the same trees, zstd layers
#   small-files  one gzip layer: /usr/share/man (~21,000 small files)
#   share-a      /usr/lib/python3.11 /usr/share/doc /usr/include /usr/share/perl
#   share-b      the same first three layers, then /usr/libexec
#   index        an OCI index: /usr/include and /usr/share/perl as linux/amd64, and small images
#                for linux/arm64/v8 and linux/ppc64le that every puller must skip
#   one-big      ONE gzip layer of at least 2.2 GB (the machine-learning image case: few layers,
#                large files): /usr/lib/x86_64-linux-gnu, /usr/lib/llvm-*, /usr/lib/jvm, then
#                /usr/lib/gcc and /usr/share/doc as far as needed, gathered under
#                $BENCH_WORK/one-big-tree as hard links (no copy)
# --quick drops /usr/bin from large and large-zstd (about half the size), and one-big.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${BENCH_WORK:-/var/tmp/berth-bench}
bin=${BERTH_BUILD_DIR:-build-bench}
seed=${BERTH_SEED:-$bin/tools/berth-seed/berth-seed}
quick=0
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    --stop)
      if [ -f "$work/seeds.pid" ]; then
        while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$work/seeds.pid"
        rm -f "$work/seeds.pid" "$work/images.env"
      fi
      exit 0 ;;
    *) echo "usage: $0 [--quick] [--stop]" >&2; exit 2 ;;
  esac
done

seeds_alive() {
  [ -f "$work/images.env" ] && [ -f "$work/seeds.pid" ] || return 1
  local pid
  while read -r pid; do kill -0 "$pid" 2>/dev/null || return 1; done <"$work/seeds.pid"
}
if seeds_alive; then
  echo "images already served (bench/build-images.sh --stop to rebuild):"
  cat "$work/images.env"
  exit 0
fi
[ -x "$seed" ] || { echo "no $seed: build first (BERTH_BUILD_DIR=$bin bash scripts/build.sh)" >&2; exit 1; }
mkdir -p "$work"
# One builder at a time: a second one would delete the first one's seed directories.
exec 9>"$work/build.lock"
flock -n 9 || { echo "another bench/build-images.sh is running" >&2; exit 1; }
: >"$work/seeds.pid"

large_dirs=(/usr/lib/gcc /usr/bin /usr/include /usr/lib/python3.11 /usr/share/doc)
[ $quick = 1 ] && large_dirs=(/usr/lib/gcc /usr/include /usr/lib/python3.11 /usr/share/doc)

# name compression dirs... (and in $seed_extra, more berth-seed arguments)
start_seed() {
  local name=$1 compression=$2
  shift 2
  local dir=$work/seed-$name args=()
  rm -rf "$dir"
  mkdir -p "$dir/tmp"
  for d in "$@"; do args+=(--layer-dir "$d"); done
  # shellcheck disable=SC2206  # word splitting intended
  args+=(${seed_extra:-})
  TMPDIR=$dir/tmp setsid "$seed" "${args[@]}" --compression "$compression" --work-dir "$dir" \
    --repo "bench/$name" --tag v1 --ready-file "$dir/ready" >"$dir/log" 2>&1 </dev/null 9>&- &
  echo $! >>"$work/seeds.pid"
  echo $! >"$dir/pid"
}

start_seed large gzip "${large_dirs[@]}"
start_seed large-zstd zstd "${large_dirs[@]}"
start_seed small-files gzip /usr/share/man
start_seed share-a gzip /usr/lib/python3.11 /usr/share/doc /usr/include /usr/share/perl
start_seed share-b gzip /usr/lib/python3.11 /usr/share/doc /usr/include /usr/libexec
names="large large-zstd small-files share-a share-b index"
big_tree=$work/one-big-tree
if [ $quick = 0 ] && [ ! -d "$big_tree" ]; then
  rm -rf "$big_tree.tmp"
  mkdir -p "$big_tree.tmp"
  # Trees of large files, taken until the layer holds at least 2.2 GB (which LLVM and JVM a
  # machine has varies; each tree keeps its own name under the layer's root).
  big_mb=0
  for d in /usr/lib/x86_64-linux-gnu /usr/lib/llvm-* /usr/lib/jvm /usr/lib/gcc /usr/share/doc; do
    [ -d "$d" ] && [ "$big_mb" -lt 2200 ] || continue
    cp -al "$d" "$big_tree.tmp/"
    big_mb=$((big_mb + $(du -sm "$d" | cut -f1)))
  done
  mv "$big_tree.tmp" "$big_tree"
fi
if [ $quick = 0 ]; then
  start_seed one-big gzip "$big_tree"
  names="$names one-big"
fi
seed_extra="--index-platform linux/arm64/v8 --index-platform linux/ppc64le" \
  start_seed index gzip /usr/include /usr/share/perl

: >"$work/images.env.tmp"
for name in $names; do
  for _ in $(seq 1 6000); do
    [ -s "$work/seed-$name/ready" ] && break
    kill -0 "$(cat "$work/seed-$name/pid")" 2>/dev/null || break
    sleep 0.2
  done
  [ -s "$work/seed-$name/ready" ] || { echo "seed $name failed:" >&2; cat "$work/seed-$name/log" >&2; exit 1; }
  echo "$name=$(cat "$work/seed-$name/ready")" >>"$work/images.env.tmp"
  grep -E 'layer|manifest' "$work/seed-$name/log" | sed "s/^/$name: /"
done
mv "$work/images.env.tmp" "$work/images.env"
echo "images (in $work/images.env):"
cat "$work/images.env"
