#!/usr/bin/env bash
# Command (a): installs the dependencies, builds, and runs berth's main job on an embedded
# default: a real registry on loopback seeded with a generated image; berthd serving the CRI
# ImageService on a unix socket; the berth CLI pulling, listing and inspecting through it; then,
# with berthd stopped, the CLI mounting the image's root filesystem from the root directly.
# Nothing leaves this machine.
#
# It builds only what it runs: berth, berthd and berth-seed (the test command builds the rest).
# Set BERTH_DEMO_SKIP_BUILD=1 to reuse an existing build (in $BERTH_BUILD_DIR, default build).
# BERTH_DEMO_BIN_DIR=/usr/bin runs the berth and berthd installed there (the Debian package, as
# scripts/package_check.sh does); berth-seed, which is not installed, still comes from the build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BERTH_DEMO_SKIP_BUILD:-}" ]; then
  bash scripts/setup.sh
  bash scripts/build.sh berth berthd berth-seed
fi
build=${BERTH_BUILD_DIR:-build}
berth=${BERTH_DEMO_BIN_DIR:-$build/cmd/berth}/berth
berthd=${BERTH_DEMO_BIN_DIR:-$build/cmd/berthd}/berthd

work=$(mktemp -d /tmp/berth-demo.XXXXXX)
address="unix://$work/berth.sock"
seed_pid=""
berthd_pid=""
stop_berthd() {
  if [ -n "$berthd_pid" ]; then
    kill -TERM "$berthd_pid" 2>/dev/null || true
    wait "$berthd_pid" 2>/dev/null || true
    berthd_pid=""
  fi
}
cleanup() {
  stop_berthd
  if [ -f "$work/mounted" ]; then
    "$berth" --root "$work/root" unmount "$work/rootfs" || umount "$work/rootfs" || true
  fi
  [ -n "$seed_pid" ] && kill "$seed_pid" 2>/dev/null && wait "$seed_pid" 2>/dev/null
  # Never delete through a mount that is still there.
  if mountpoint -q "$work/rootfs" 2>/dev/null; then
    echo "demo: $work/rootfs is still mounted; leaving $work in place" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

echo "== 1. a local registry on loopback, seeded with a generated image =="
"$build/tools/berth-seed/berth-seed" --ready-file "$work/ready" &
seed_pid=$!
for _ in $(seq 1 100); do [ -s "$work/ready" ] && break; sleep 0.1; done
[ -s "$work/ready" ] || { echo "demo: the seed registry did not start" >&2; exit 1; }
ref=$(cat "$work/ready")

echo
echo "== 2. berth ref normalize =="
"$berth" ref normalize busybox ubuntu:22.04 quay.io/coreos/etcd:v3.5 "$ref"
"$berth" ref normalize --json "$ref"

echo
echo "== 3. berthd: the CRI ImageService on $address (root $work/root) =="
"$berthd" --root "$work/root" --state "$work/state" --address "$address" \
  >"$work/berthd.log" 2>&1 &
berthd_pid=$!
for _ in $(seq 1 200); do
  [ -S "$work/berth.sock" ] && break
  kill -0 "$berthd_pid" 2>/dev/null || break
  sleep 0.1
done
if [ ! -S "$work/berth.sock" ]; then
  echo "demo: berthd did not start:" >&2
  cat "$work/berthd.log" >&2
  exit 1
fi
echo "berthd running, pid $berthd_pid"

echo
echo "== 4. berth pull $ref (through berthd: CRI PullImage) =="
"$berth" --address "$address" pull "$ref"

echo
echo "== 5. berth images (CRI ListImages) =="
"$berth" --address "$address" images

echo
echo "== 6. berth inspect $ref (CRI ImageStatus, verbose) =="
"$berth" --address "$address" inspect "$ref" | head -n 25

echo
echo "== 7. berth fsinfo (CRI ImageFsInfo) =="
"$berth" --address "$address" fsinfo

echo
echo "== 8. berthd's request log =="
grep 'cri.request' "$work/berthd.log" || true

echo
echo "== 9. stop berthd (SIGTERM); the CLI now opens the root itself =="
stop_berthd
"$berth" --root "$work/root" images
"$berth" --root "$work/root" content ls

echo
echo "== 10. berth mount: the image's root filesystem at $work/rootfs =="
mkdir -p "$work/rootfs"
"$berth" --root "$work/root" mount "$ref" "$work/rootfs"
touch "$work/mounted"
ls -l "$work/rootfs" "$work/rootfs/etc"
echo "--- $work/rootfs/etc/os-release:"
cat "$work/rootfs/etc/os-release"

echo
echo "== 11. berth unmount =="
"$berth" --root "$work/root" unmount "$work/rootfs"
rm -f "$work/mounted"
echo "demo: done"
