#!/usr/bin/env bash
# Command (a): installs the dependencies, builds, and runs berth's main job on an embedded
# default: a real registry on loopback seeded with a generated image, which berth then pulls
# into a fresh root and lists. Nothing leaves this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
bin=${BERTH_BUILD_DIR:-build}/cmd

work=$(mktemp -d /tmp/berth-demo.XXXXXX)
seed_pid=""
cleanup() {
  [ -n "$seed_pid" ] && kill "$seed_pid" 2>/dev/null && wait "$seed_pid" 2>/dev/null
  if [ -f "$work/mounted" ]; then "$bin/berth/berth" --root "$work/root" unmount "$work/rootfs" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== 1. a local registry on loopback, seeded with a generated image =="
"$bin/berth-seed/berth-seed" --ready-file "$work/ready" &
seed_pid=$!
for _ in $(seq 1 100); do [ -s "$work/ready" ] && break; sleep 0.1; done
[ -s "$work/ready" ] || { echo "demo: the seed registry did not start" >&2; exit 1; }
ref=$(cat "$work/ready")

echo
echo "== 2. berth ref normalize =="
"$bin/berth/berth" ref normalize busybox ubuntu:22.04 quay.io/coreos/etcd:v3.5 "$ref"
"$bin/berth/berth" ref normalize --json "$ref"

echo
echo "== 3. berth pull $ref (into $work/root: blobs, and layers unpacked into overlayfs snapshots) =="
"$bin/berth/berth" --root "$work/root" pull "$ref"

echo
echo "== 4. berth content ls =="
"$bin/berth/berth" --root "$work/root" content ls

echo
echo "== 5. a second pull finds every blob present and fetches nothing =="
"$bin/berth/berth" --root "$work/root" pull "$ref"

echo
echo "== 6. berth mount: the image's root filesystem at $work/rootfs =="
mkdir -p "$work/rootfs"
"$bin/berth/berth" --root "$work/root" mount "$ref" "$work/rootfs"
touch "$work/mounted"
ls -l "$work/rootfs" "$work/rootfs/etc"
echo "--- $work/rootfs/etc/os-release:"
cat "$work/rootfs/etc/os-release"

echo
echo "== 7. berth unmount =="
"$bin/berth/berth" --root "$work/root" unmount "$work/rootfs"
rm -f "$work/mounted"
echo "demo: done"
