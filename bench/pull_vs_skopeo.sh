#!/usr/bin/env bash
# Times `berth pull` (download + verify into the content store; no unpack) against
# `skopeo copy` to an OCI layout (the download-only floor) for the same generated image on the
# same loopback registry, interleaved, from a fresh empty destination every run. Prints each run
# and the medians. Not a test: figures only.
#
#   bash bench/pull_vs_skopeo.sh [RUNS] [DIR...]     (defaults: 3 runs, ~200 MB from /usr)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
shift || true
dirs=("$@")
if [ ${#dirs[@]} -eq 0 ]; then dirs=(/usr/lib/x86_64-linux-gnu /usr/share/doc); fi

command -v skopeo >/dev/null || { apt-get install -y -qq skopeo >/dev/null; }
bash scripts/build.sh >/dev/null
bin=${BERTH_BUILD_DIR:-build}/cmd

work=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
seed_pid=""
cleanup() {
  [ -n "$seed_pid" ] && kill "$seed_pid" 2>/dev/null && wait "$seed_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

layer_args=()
for d in "${dirs[@]}"; do layer_args+=(--layer-dir "$d"); done
"$bin/berth-seed/berth-seed" "${layer_args[@]}" --work-dir "$work" --repo bench/big --tag v1 \
  --ready-file "$work/ready" &
seed_pid=$!
for _ in $(seq 1 3000); do [ -s "$work/ready" ] && break; sleep 0.1; done
ref=$(cat "$work/ready")
echo "image: $ref"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
berth_times=()
skopeo_times=()
for i in $(seq 1 "$runs"); do
  rm -rf "$work/berth-root" "$work/oci"
  start=$(date +%s.%N)
  "$bin/berth/berth" --root "$work/berth-root" pull -q "$ref" >/dev/null
  berth_times+=("$(echo "$(date +%s.%N) - $start" | bc)")
  start=$(date +%s.%N)
  skopeo copy -q --src-tls-verify=false "docker://$ref" "oci:$work/oci:v1" >/dev/null
  skopeo_times+=("$(echo "$(date +%s.%N) - $start" | bc)")
  echo "run $i: berth ${berth_times[-1]} s, skopeo ${skopeo_times[-1]} s"
done
size=$(du -sb "$work/berth-root/content/blobs" | cut -f1)
b=$(printf '%s\n' "${berth_times[@]}" | median)
s=$(printf '%s\n' "${skopeo_times[@]}" | median)
echo "content: $size bytes"
echo "median: berth pull $b s, skopeo copy $s s, ratio skopeo/berth $(echo "scale=2; $s / $b" | bc)"
