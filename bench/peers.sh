#!/usr/bin/env bash
# Peer sharing (issue 17) on a small cluster: five berthd nodes, each in a network namespace of
# its own on a private bridge (10.213.0.0/24; the bridge in a "switch" namespace, nothing added to
# the root namespace), and a Distribution registry in a sixth behind a rate limit (tc tbf on its
# link: a far-away registry). All five pull one image at once, with [peers] (a static list of the
# five) and without (the section removed), and one node pulls it alone (the baseline: issue 17
# asks the five with peers to take at most 1.5x of it), interleaved. Prints, per mode, the
# median wall time until the nodes pulling have the image and the registry's blob bytes and
# GETs (its access log), and appends the table to bench/results.md. Runs on a tmpfs of its own.
# Figures only: not a test. Needs root, and the image from berth-seed (built here from
# --layer-dir directories of this machine).
#
#   bash bench/peers.sh [--runs N] [--rate 200mbit] [--layers "/usr/include /usr/share/doc"]
#                       [--no-record]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
runs=3
rate=200mbit
layers="/usr/lib/python3.11 /usr/share/doc /usr/include"
record=1
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift ;;
    --rate) rate=$2; shift ;;
    --layers) layers=$2; shift ;;
    --no-record) record=0 ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || { echo "bench/peers.sh needs root (network namespaces)" >&2; exit 1; }

bin=${BERTH_BUILD_DIR:-$repo/build}
berth=$bin/cmd/berth/berth
berthd=$bin/cmd/berthd/berthd
seed=$bin/tools/berth-seed/berth-seed
for b in "$berth" "$berthd" "$seed"; do
  [ -x "$b" ] || { echo "missing $b: BERTH_BUILD_DIR=$bin bash scripts/build.sh berth berthd berth-seed" >&2; exit 1; }
done
for t in ip tc docker-registry; do
  command -v "$t" >/dev/null || { echo "missing $t (scripts/setup.sh)" >&2; exit 1; }
done

# Everything (the registry's storage, the nodes' roots) on a fresh tmpfs: the root ext4 here has
# no journal and slows after large deletions, which would skew later runs.
work=$(mktemp -d /var/tmp/berth-peers-bench.XXXXXX)
mount -t tmpfs -o size=8g,mode=0755 berth-peers-bench "$work"
prefix=berthb-$$
subnet=10.213.0
registry_ip=$subnet.2
registry=$registry_ip:5000
nodes=(11 12 13 14 15)
pids=()

say() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

cleanup() {
  say "cleaning up"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix-" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns delete "$ns" 2>/dev/null || true
  done
  umount "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- the network --------------------------------------------------------------------------------
ip netns add "$prefix-switch"
ip -n "$prefix-switch" link add br0 type bridge
ip -n "$prefix-switch" link set br0 up
add_host() { # role host-number
  local ns=$prefix-$1
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$prefix-switch" link add "p$2" type veth peer name eth0 netns "$ns"
  ip -n "$prefix-switch" link set "p$2" master br0
  ip -n "$prefix-switch" link set "p$2" up
  ip -n "$ns" addr add "$subnet.$2/24" dev eth0
  ip -n "$ns" link set eth0 up
}
add_host registry 2
for n in "${nodes[@]}"; do add_host "node$n" "$n"; done

say "network up; building and pushing the image"
# --- the image: berth-seed pushes it to a loopback registry; the namespaced one serves its storage
mkdir -p "$work/seed/tmp"
seed_args=()
for d in $layers; do seed_args+=(--layer-dir "$d"); done
TMPDIR=$work/seed/tmp "$seed" "${seed_args[@]}" --compression gzip --work-dir "$work/seed" \
  --repo bench/peers --tag v1 --ready-file "$work/seed/ready" >"$work/seed/log" 2>&1 </dev/null &
pids+=($!)
for _ in $(seq 1 600); do [ -s "$work/seed/ready" ] && break; sleep 1; done
[ -s "$work/seed/ready" ] || { echo "berth-seed failed:" >&2; cat "$work/seed/log" >&2; exit 1; }
storage=$(echo "$work"/seed/tmp/berth-registry-*/storage)
image_bytes=$(du -sb "$storage/docker/registry/v2/blobs" | awk '{print $1}')
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: "$storage"
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $registry
  secret: berth-peers-bench
EOF
ip netns exec "$prefix-registry" docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
tc -n "$prefix-registry" qdisc replace dev eth0 root tbf rate "$rate" burst 256kb latency 1s
reference=$registry/bench/peers:v1
say "image ready ($(awk -v b="$image_bytes" 'BEGIN { printf "%.1f", b / 1048576 }') MiB of blobs); registry limited to $rate"

# --- one run ------------------------------------------------------------------------------------
# Writes node n's config for `mode` (peers | nopeers | alone).
node_config() { # n mode
  local dir=$work/node$1 static="" m
  for m in "${nodes[@]}"; do static+="${static:+, }\"$subnet.$m:5050\""; done
  {
    printf 'root = "%s"\nstate = "%s"\nsnapshotter_address = ""\n' "$dir/root" "$dir/state"
    printf '[pull]\nsnapshotter = "overlayfs"\n'
    printf '[registry.mirrors."%s"]\nendpoint = ["http://%s"]\n' "$registry" "$registry"
    if [ "$2" = peers ]; then
      printf '[peers]\nlisten = "%s:5050"\nself = "%s:5050"\nstatic = [%s]\n' \
        "$subnet.$1" "$subnet.$1" "$static"
    fi
  } >"$dir/config.toml"
}

# Prints "wall_seconds registry_blob_bytes registry_blob_gets" for one run of `mode`: all five
# nodes pulling (peers, nopeers), or the first one alone.
run_once() { # mode
  local mode=$1 n from start end daemons=() pulls=() failed=0 pulling=("${nodes[@]}")
  [ "$mode" = alone ] && pulling=("${nodes[0]}")
  from=$(stat -c %s "$work/registry.log")
  for n in "${pulling[@]}"; do
    rm -rf "$work/node$n"
    mkdir -p "$work/node$n"
    node_config "$n" "$mode"
    ip netns exec "$prefix-node$n" "$berthd" --config "$work/node$n/config.toml" \
      --address "unix://$work/node$n/berth.sock" --log-level info >"$work/node$n/berthd.log" 2>&1 &
    daemons+=($!)
  done
  for n in "${pulling[@]}"; do
    for _ in $(seq 1 200); do [ -S "$work/node$n/berth.sock" ] && break; sleep 0.05; done
  done
  sleep 0.5 # every socket exists; let each daemon finish listening
  start=$(date +%s.%N)
  for n in "${pulling[@]}"; do
    "$berth" --address "unix://$work/node$n/berth.sock" pull "$reference" \
      >"$work/node$n/pull.out" 2>&1 &
    pulls+=($!)
  done
  for p in "${pulls[@]}"; do wait "$p" || failed=1; done
  end=$(date +%s.%N)
  for d in "${daemons[@]}"; do kill "$d" 2>/dev/null || true; done
  for d in "${daemons[@]}"; do wait "$d" 2>/dev/null || true; done
  if [ $failed = 1 ]; then
    echo "a pull failed ($mode):" >&2
    cat "$work"/node*/pull.out >&2
    exit 1
  fi
  tail -c +$((from + 1)) "$work/registry.log" | grep '"GET /v2/[^"]*/blobs/' | awk -F'"' \
    -v wall="$(echo "$end - $start" | bc)" \
    '{ split($3, s, " "); if (s[1] == 200 || s[1] == 206) { bytes += s[2]; gets++ } }
     END { printf "%.2f %d %d\n", wall, bytes, gets }'
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A walls bytes gets
for run in $(seq 1 "$runs"); do
  for mode in peers nopeers alone; do
    read -r w b g < <(run_once "$mode")
    echo "run $run $mode: ${w} s, registry sent $(mib "$b") MiB in $g blob GETs"
    walls[$mode]+="$w"$'\n'
    bytes[$mode]+="$b"$'\n'
    gets[$mode]+="$g"$'\n'
  done
done

commit=$(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet || echo +dirty)
table="## $(date -u '+%Y-%m-%d %H:%M UTC'), berth $commit (binaries: $bin), $(nproc) cores, kernel $(uname -r): peers (bench/peers.sh)

Five berthd nodes in network namespaces pull one image at once ($(mib "$image_bytes") MiB of blobs: $layers) from a Distribution registry limited to $rate (tc tbf); median of $runs runs.

| mode | the nodes pulling have the image (s) | registry blob bytes (MiB) | registry blob GETs |
|---|---|---|---|"
for mode in peers nopeers alone; do
  table+="
| $mode | $(printf '%s' "${walls[$mode]}" | median) | $(mib "$(printf '%s' "${bytes[$mode]}" | median)") | $(printf '%s' "${gets[$mode]}" | median) |"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
med() { printf '%s' "$1" | median; }
table+="

Five nodes with peers take $(ratio "$(med "${walls[peers]}")" "$(med "${walls[alone]}")")x the time of one node alone (target: at most 1.5x), and cost the registry $(ratio "$(med "${bytes[peers]}")" "$image_bytes")x the image's blob bytes (target: 1x); without peers $(ratio "$(med "${walls[nopeers]}")" "$(med "${walls[alone]}")")x and $(ratio "$(med "${bytes[nopeers]}")" "$image_bytes")x."
echo
echo "$table"
if [ $record = 1 ]; then printf '\n%s\n' "$table" >>"$repo/bench/results.md"; fi
