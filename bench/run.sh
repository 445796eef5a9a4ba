#!/usr/bin/env bash
# berth's benchmark suite (issue 7): cold pull+unpack of the images from bench/build-images.sh by
# berth (embedded with its overlayfs snapshotter, embedded with its erofs one as berth-erofs, and
# through berthd over CRI), containerd 1.6 (ctr, and its CRI PullImage),
# containerd 1.6's CRI PullImage with berthd as its proxy snapshotter serving remote snapshots
# (containerd+berth, issue 15: berth fetches and unpacks the layers, containerd the manifest and
# config), podman, and skopeo copy (download-only floor), interleaved, each run from a fresh empty
# filesystem: a fresh loop-mounted ext4 image under /var/tmp (default) or a fresh tmpfs.
# Then the scenarios: the second of two images sharing three layers, 20 concurrent CRI pulls of
# one image against one, five different images pulled at once, and a small pull while a large
# one runs (the last two through berthd and containerd's CRI). Prints medians, appends them to
# bench/results.md. Figures only: not a test. Needs root (mounts), and the peers from
# bench/setup-peers.sh.
#
#   bash bench/run.sh [--runs N] [--quick] [--tmpfs]
#                     [--images "large large-zstd small-files index one-big"]
#                     [--tools "berth berth-erofs berthd ctr containerd-cri containerd+berth
#                              podman skopeo"]
#                     [--no-scenarios]
#
# --quick: 1 run, the smaller `large` (build-images.sh --quick), no large-zstd, no one-big.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
runs=3
quick=0
fs=ext4
images="large large-zstd small-files index one-big"
tools="berth berth-erofs berthd ctr containerd-cri containerd+berth podman skopeo"
scenarios=1
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift ;;
    --quick) quick=1; runs=1; images="large small-files index" ;;
    --tmpfs) fs=tmpfs ;;
    --images) images=$2; shift ;;
    --tools) tools=$2; shift ;;
    --no-scenarios) scenarios=0 ;;
    *) sed -n '2,21p' "$0" >&2; exit 2 ;;
  esac
  shift
done

export BERTH_BUILD_DIR=${BERTH_BUILD_DIR:-$repo/build-bench}
export BENCH_WORK=${BENCH_WORK:-/var/tmp/berth-bench}
bin=$BERTH_BUILD_DIR
berth=$bin/cmd/berth/berth
berthd=$bin/cmd/berthd/berthd
berth_cri=$bin/contrib/cri-client/berth-cri
for b in "$berth" "$berthd" "$berth_cri"; do
  [ -x "$b" ] || { echo "missing $b: BERTH_BUILD_DIR=$bin bash scripts/build.sh" >&2; exit 1; }
done
# The peers the chosen tools need (and what every run needs).
peers=(/usr/bin/time mkfs.ext4 bc)
for t in $tools; do
  case $t in
    ctr|containerd-cri|containerd+berth) peers+=(containerd ctr) ;;
    podman|skopeo) peers+=("$t") ;;
  esac
done
for t in "${peers[@]}"; do
  command -v "$t" >/dev/null || { echo "missing $t: bash bench/setup-peers.sh" >&2; exit 1; }
done

if [ $quick = 1 ]; then bash bench/build-images.sh --quick; else bash bench/build-images.sh; fi
declare -A ref
while IFS='=' read -r k v; do ref[$k]=$v; done <"$BENCH_WORK/images.env"

run_dir=$BENCH_WORK/run
mnt=$run_dir/mnt
raw=$BENCH_WORK/raw-$(date +%Y%m%d-%H%M%S).tsv
mkdir -p "$run_dir" "$mnt"
daemon_pids=() # the daemons of the run, in the order they were started
cleanup() {
  stop_daemons
  fs_down
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ticks=$(getconf CLK_TCK)

# --- a fresh, empty filesystem per measured run -------------------------------------------------
fs_up() {
  if [ "$fs" = tmpfs ]; then
    mount -t tmpfs -o size=12g bench-tmpfs "$mnt"
  else
    rm -f "$run_dir/fs.img"
    truncate -s 16G "$run_dir/fs.img"
    mkfs.ext4 -q -F "$run_dir/fs.img"
    # noinit_itable: no lazy inode-table zeroing in the background while we measure.
    mount -o loop,noinit_itable "$run_dir/fs.img" "$mnt"
  fi
  sync
}
fs_down() {
  if mountpoint -q "$mnt"; then
    # Overlay mounts of a daemon (none expected for pulls) would keep the fs busy.
    { grep " $mnt/" /proc/mounts || true; } | awk '{print $2}' | sort -r | while read -r m; do umount "$m" || true; done
    umount "$mnt" || umount -l "$mnt"
  fi
  rm -f "$run_dir/fs.img"
}

# --- daemons ------------------------------------------------------------------------------------
wait_for() { # cmd... : retry for 30 s
  for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}
# Writes a hosts.toml per bench registry (host:port) under $mnt/hosts, as containerd 1.6 needs
# them (an explicit [host] table; `server` alone did not do): the registry settings containerd
# and berthd share in the containerd+berth runs.
write_hosts_dir() {
  local name hp
  for name in "${!ref[@]}"; do
    hp=${ref[$name]%%/*}
    mkdir -p "$mnt/hosts/$hp"
    {
      echo "server = \"http://$hp\""
      echo
      echo "[host.\"http://$hp\"]"
      echo '  capabilities = ["pull", "resolve"]'
    } >"$mnt/hosts/$hp/hosts.toml"
  done
}
start_berthd() { # [snapshotter]: also serve containerd's Snapshots API, registries from $mnt/hosts
  local d=$mnt/berthd args=() ready
  mkdir -p "$d"
  ready=$d/berthd.sock
  if [ "${1:-}" = snapshotter ]; then
    write_hosts_dir
    printf '[registry]\nconfig_path = "%s"\n' "$mnt/hosts" >"$d/config.toml"
    # debug: the containerd.remote.taken lines, one per layer berth handed to containerd.
    args=(--config "$d/config.toml" --snapshotter-address "unix://$d/snapshotter.sock"
      --log-level debug)
    ready=$d/snapshotter.sock
  else
    args=(--log-level warn)
  fi
  setsid "$berthd" --root "$d/root" --state "$d/state" --address "unix://$d/berthd.sock" \
    "${args[@]}" >"$d/log" 2>&1 </dev/null &
  daemon_pids+=($!)
  wait_for test -S "$ready" || { cat "$d/log" >&2; return 1; }
  sleep 0.2
}
containerd_config() { # cri: 0 (none) | 1 (overlayfs) | berth (proxy snapshotter: berthd's socket)
  local d=$mnt/containerd
  mkdir -p "$d"
  {
    echo 'version = 2'
    echo "root = \"$d/root\""
    echo "state = \"$d/state\""
    echo '[grpc]'
    echo "  address = \"$d/containerd.sock\""
    echo '[ttrpc]'
    echo "  address = \"$d/containerd.sock.ttrpc\""
    echo '[plugins."io.containerd.internal.v1.opt"]'
    echo "  path = \"$d/opt\""
    if [ "$1" = 0 ]; then
      echo 'disabled_plugins = ["io.containerd.grpc.v1.cri"]'
    elif [ "$1" = berth ]; then
      echo '[proxy_plugins.berth]'
      echo '  type = "snapshot"'
      echo "  address = \"$mnt/berthd/snapshotter.sock\""
      echo '[plugins."io.containerd.grpc.v1.cri"]'
      echo '  disable_apparmor = true'
      echo '[plugins."io.containerd.grpc.v1.cri".containerd]'
      echo '  snapshotter = "berth"'
      echo '  disable_snapshot_annotations = false'
      echo '[plugins."io.containerd.grpc.v1.cri".registry]'
      echo "  config_path = \"$mnt/hosts\""
    else
      echo '[plugins."io.containerd.grpc.v1.cri"]'
      echo '  disable_apparmor = true'
      echo '[plugins."io.containerd.grpc.v1.cri".containerd]'
      echo '  snapshotter = "overlayfs"'
      local name hp
      for name in "${!ref[@]}"; do
        hp=${ref[$name]%%/*}
        echo "[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"$hp\"]"
        echo "  endpoint = [\"http://$hp\"]"
      done
    fi
  } >"$d/config.toml"
  # disabled_plugins must come before any table: move it to the top.
  if grep -q '^disabled_plugins' "$d/config.toml"; then
    { grep '^disabled_plugins' "$d/config.toml"; grep -v '^disabled_plugins' "$d/config.toml"; } \
      >"$d/config.toml.new" && mv "$d/config.toml.new" "$d/config.toml"
  fi
}
start_containerd() { # cri: 0 | 1 | berth, as containerd_config
  containerd_config "$1"
  local d=$mnt/containerd
  setsid containerd --config "$d/config.toml" --log-level warn >"$d/log" 2>&1 </dev/null &
  daemon_pids+=($!)
  wait_for ctr --address "$d/containerd.sock" version || { cat "$d/log" >&2; return 1; }
}
# Stops the daemons, the last started first (containerd before the berthd it mounts from).
stop_daemons() {
  local i pid
  for ((i = ${#daemon_pids[@]} - 1; i >= 0; i--)); do
    pid=${daemon_pids[$i]}
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  daemon_pids=()
}
# utime+stime (ticks) and VmHWM (kB) of the run's daemons, summed.
daemon_ticks() {
  local pid sum=0
  for pid in "${daemon_pids[@]}"; do sum=$((sum + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo "$sum"
}
daemon_hwm_kb() {
  local pid sum=0
  for pid in "${daemon_pids[@]}"; do sum=$((sum + $(awk '/^VmHWM/ {print $2}' "/proc/$pid/status"))); done
  echo "$sum"
}

# --- one timed client command -------------------------------------------------------------------
# Sets: wall cpu rss (client, MB) drss (daemons' VmHWM summed, MB, or -) ok
timed() { # cmd...
  local tf=$run_dir/time.out t0=0 t1=0 status=0
  [ ${#daemon_pids[@]} -gt 0 ] && t0=$(daemon_ticks)
  /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$run_dir/cmd.out" 2>&1 || status=$?
  [ ${#daemon_pids[@]} -gt 0 ] && t1=$(daemon_ticks)
  read -r wall user sys rss_kb < <(tail -n 1 "$tf")
  cpu=$(echo "$user + $sys + ($t1 - $t0) / $ticks" | bc -l)
  rss=$((rss_kb / 1024))
  drss=-
  [ ${#daemon_pids[@]} -gt 0 ] && drss=$(($(daemon_hwm_kb) / 1024))
  ok=1
  if [ $status != 0 ]; then
    ok=0
    echo "  FAILED ($status): $*" >&2
    tail -n 5 "$run_dir/cmd.out" | sed 's/^/    /' >&2
  fi
}

# Pull ref with tool on the mounted fs. Sets the timed() variables.
pull_with() { # tool ref [keep-daemon]
  local tool=$1 r=$2
  case $tool in
    berth) timed "$berth" --root "$mnt/berth" pull -q "$r" ;;
    berth-erofs) timed "$berth" --root "$mnt/berth" pull -q --snapshotter erofs "$r" ;;
    berthd) timed "$berth_cri" --endpoint "unix://$mnt/berthd/berthd.sock" pull "$r" ;;
    ctr) timed ctr --address "$mnt/containerd/containerd.sock" -n bench images pull --plain-http \
           --snapshotter overlayfs "$r" ;;
    containerd-cri|containerd+berth)
      timed "$berth_cri" --endpoint "unix://$mnt/containerd/containerd.sock" pull "$r" ;;
    podman) timed podman --root "$mnt/podman/root" --runroot "$mnt/podman/runroot" \
              --storage-driver overlay --tmpdir "$mnt/podman/tmp" --events-backend none \
              --cgroup-manager cgroupfs pull -q --tls-verify=false "$r" ;;
    skopeo) mkdir -p "$mnt/skopeo"
            timed skopeo copy -q --src-tls-verify=false "docker://$r" "oci:$mnt/skopeo/oci:v1" ;;
  esac
}
# The time from "pull done" to the first file read in the container's view, s: `berth mount`
# (a new active snapshot on the image: overlayfs over the layers, berth-erofs: over their EROFS
# mounts, made here) and reading the first 4 KiB of the first file found in it. The pull's
# pages are still cached, as for a container started right after its pull. "-" for other tools.
first_read_with() { # tool ref
  first_read=-
  case $1 in berth|berth-erofs) ;; *) return ;; esac
  [ "$ok" = 1 ] || return
  local view=$mnt/view t0 t1 file
  mkdir -p "$view"
  t0=$(date +%s.%N)
  "$berth" --root "$mnt/berth" mount "$2" "$view" >"$run_dir/mount.out" 2>&1 &&
    file=$(find "$view" -type f -print -quit) && [ -n "$file" ] &&
    head -c 4096 "$file" >/dev/null || { echo "  first read failed: $(tail -n 1 "$run_dir/mount.out")" >&2; return; }
  t1=$(date +%s.%N)
  first_read=$(printf '%.3f' "$(echo "$t1 - $t0" | bc -l)")
  "$berth" --root "$mnt/berth" unmount "$view" >/dev/null 2>&1 || true
}
daemon_for() { # tool: start the daemons the tool talks to, if any
  case $1 in
    berthd) start_berthd ;;
    ctr) start_containerd 0 ;;
    containerd-cri) start_containerd 1 ;;
    containerd+berth) start_berthd snapshotter && start_containerd berth ;;
  esac
}
# Bytes in the tool's content store (what was fetched), MB. containerd+berth: containerd's, which
# holds only the manifest and config when berth handed over every layer.
content_mb() {
  local d
  case $1 in
    berth|berth-erofs) d=$mnt/berth/content ;;
    berthd) d=$mnt/berthd/root/content ;;
    ctr|containerd-cri|containerd+berth) d=$mnt/containerd/root/io.containerd.content.v1.content ;;
    *) echo -; return ;;
  esac
  du -sm "$d" 2>/dev/null | cut -f1 || echo -
}

# Bytes the unpacked layers take on disk (du: allocated blocks, hard links once), MB: the
# tool's snapshot (or storage) directory. berth-erofs: its layer images.
unpacked_mb() {
  local d
  case $1 in
    berth|berth-erofs) d=$mnt/berth/snapshots ;;
    berthd) d=$mnt/berthd/root/snapshots ;;
    ctr|containerd-cri) d=$mnt/containerd/root/io.containerd.snapshotter.v1.overlayfs ;;
    podman) d=$mnt/podman/root/overlay ;;
    *) echo -; return ;;
  esac
  du -sm "$d" 2>/dev/null | cut -f1 || echo -
}

record() { # scenario image tool run
  printf '%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$wall" "$cpu" "$rss" \
    "$drss" "${fetched:--}" "$ok" "${unpacked:--}" "${first_read:--}" >>"$raw"
  printf '  %-12s %-12s %-15s run %s: wall %6s s  cpu %6.2f s  rss %4s MB  daemon %4s MB  fetched %s MB  unpacked %s MB  first read %s s%s\n' \
    "$1" "$2" "$3" "$4" "$wall" "$cpu" "$rss" "$drss" "${fetched:--}" "${unpacked:--}" \
    "${first_read:--}" "$([ "$ok" = 1 ] || echo '  FAILED')"
  unpacked=""
  first_read=""
}

# containerd+berth: who fetched what. The registry's access log (its blob GETs since `from` bytes,
# by user agent) and berthd's log (containerd.remote.taken: a layer berth handed to containerd;
# .fallback: one containerd had to fetch itself). Prints it, adds it to remote_notes, and keeps
# berthd's log beside the raw figures.
registry_log() { # image
  local f
  for f in "$BENCH_WORK/seed-$1"/tmp/berth-registry-*/registry.log; do [ -f "$f" ] && echo "$f" && return; done
}
registry_log_size() { # image
  local f
  f=$(registry_log "$1")
  if [ -n "$f" ]; then stat -c %s "$f"; else echo 0; fi
}
remote_evidence() { # image run from
  local log=$mnt/berthd/log taken fallback blobs f
  taken=$(grep -c 'containerd.remote.taken' "$log" || true)
  fallback=$(grep -c 'containerd.remote.fallback' "$log" || true)
  f=$(registry_log "$1")
  blobs=-
  if [ -n "$f" ]; then
    blobs=$(tail -c +$(($3 + 1)) "$f" | grep '"GET /v2/[^"]*/blobs/' | awk -F'"' '
      { split($3, s, " "); a = $(NF - 1); sub("/.*", "", a); if (a == "") a = "?"; n[a]++; b[a] += s[2] }
      END { for (a in n) { printf "%s%s %d (%.0f MB)", sep, a, n[a], b[a] / 1048576; sep = ", " } }')
  fi
  cp "$log" "${raw%.tsv}-berthd-$1-$2.log"
  echo "  containerd+berth $1 run $2: berthd took $taken layer(s) for containerd, $fallback fallback(s); registry blob GETs by agent: ${blobs:-none}"
  remote_notes="${remote_notes:-}$1 run $2: $taken layers taken, $fallback fallbacks, blob GETs ${blobs:-none}. "
}

# --- facts --------------------------------------------------------------------------------------
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- berth cmd || echo "+dirty")
fsdesc="fresh ext4 (loop image on /var/tmp, journaled, noinit_itable) per run"
[ "$fs" = tmpfs ] && fsdesc="fresh tmpfs per run"
peer_version() { # program: its version, or "not installed"
  if command -v "$1" >/dev/null; then "$1" --version | awk '{print $3}'; else echo "not installed"; fi
}
load_start=$(cut -d" " -f1-3 /proc/loadavg)
facts="$(date -u '+%Y-%m-%d %H:%M UTC'), berth $commit (binaries: $bin), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r), $(free -g | awk '/Mem:/ {print $2}') GB RAM, $fsdesc, registry: Distribution on loopback; containerd $(peer_version containerd), podman $(peer_version podman), skopeo $(peer_version skopeo)"
echo "$facts"
printf 'scenario\timage\ttool\trun\twall\tcpu\trss\tdaemon_rss\tfetched_mb\tok\tunpacked_mb\tfirst_read_s\n' >"$raw"

# --- cold pulls, interleaved --------------------------------------------------------------------
read -r -a tool_list <<<"$tools"
for run in $(seq 1 "$runs"); do
  # Rotate the tool order each run so no tool always goes first (page cache, registry warmth).
  n=${#tool_list[@]}
  order=()
  for i in $(seq 0 $((n - 1))); do order+=("${tool_list[$(((i + run - 1) % n))]}"); done
  for image in $images; do
    for tool in "${order[@]}"; do
      fs_up
      fetched=""
      unpacked=""
      daemon_for "$tool"
      log_from=$(registry_log_size "$image")
      pull_with "$tool" "${ref[$image]}"
      fetched=$(content_mb "$tool")
      unpacked=$(unpacked_mb "$tool")
      first_read_with "$tool" "${ref[$image]}"
      stop_daemons
      record cold "$image" "$tool" "$run"
      [ "$tool" = containerd+berth ] && remote_evidence "$image" "$run" "$log_from"
      fs_down
    done
  done
done

# --- scenarios ----------------------------------------------------------------------------------
cri_endpoint() { # tool
  case $1 in
    berthd) echo "unix://$mnt/berthd/berthd.sock" ;;
    containerd-cri) echo "unix://$mnt/containerd/containerd.sock" ;;
  esac
}
# Pulls every ref at once through tool's CRI endpoint, on a fresh fs and daemon; records the
# wall time until the last one is done, the daemon's CPU, and failures.
concurrent_pulls() { # tool scenario image-label run ref...
  local tool=$1 scenario=$2 label=$3 run=$4 endpoint pids=() failed=0 t0 start i=0 r p
  shift 4
  fs_up
  daemon_for "$tool"
  endpoint=$(cri_endpoint "$tool")
  t0=$(daemon_ticks)
  start=$(date +%s.%N)
  for r in "$@"; do
    i=$((i + 1))
    "$berth_cri" --endpoint "$endpoint" pull "$r" >"$run_dir/conc-$i.out" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
  wall=$(printf '%.2f' "$(echo "$(date +%s.%N) - $start" | bc)")
  ok=1
  if [ $failed -gt 0 ]; then
    ok=0
    echo "  $scenario ($tool): $failed of $# pulls failed, e.g.: $(grep -h -m1 error "$run_dir"/conc-*.out | head -n 1)" >&2
    conc_failures="${conc_failures:-}$failed/$# $scenario pulls ($tool) failed in run $run: $(grep -h -m1 error "$run_dir"/conc-*.out | head -n 1 | cut -c1-200). "
  fi
  cpu=$(echo "($(daemon_ticks) - $t0) / $ticks" | bc -l)
  rss=-
  drss=$(($(daemon_hwm_kb) / 1024))
  fetched=$(content_mb "$tool")
  stop_daemons
  record "$scenario" "$label" "$tool" "$run"
  fs_down
}
# The latency of a small pull (small-files) that starts one second into a large one (large),
# through tool's CRI endpoint; the large pull is waited for but not timed.
pull_during_pull() { # tool run
  local tool=$1 run=$2 endpoint background
  fs_up
  daemon_for "$tool"
  endpoint=$(cri_endpoint "$tool")
  "$berth_cri" --endpoint "$endpoint" pull "${ref[large]}" >"$run_dir/background.out" 2>&1 &
  background=$!
  sleep 1
  timed "$berth_cri" --endpoint "$endpoint" pull "${ref[small-files]}"
  wait "$background" || { ok=0; echo "  background pull failed: $(tail -n 1 "$run_dir/background.out")" >&2; }
  fetched=-
  stop_daemons
  record during-large small-files "$tool" "$run"
  fs_down
}

if [ $scenarios = 1 ]; then
  for run in $(seq 1 "$runs"); do
    # The second of two images sharing their first three layers: only the new layer should be
    # fetched and unpacked.
    for tool in berth berthd ctr podman; do
      case " $tools " in *" $tool "*) ;; *) continue ;; esac
      fs_up
      daemon_for "$tool"
      pull_with "$tool" "${ref[share-a]}"
      before=$(content_mb "$tool")
      pull_with "$tool" "${ref[share-b]}"
      after=$(content_mb "$tool")
      fetched=-
      [ "$before" != - ] && fetched=$((after - before))
      stop_daemons
      record shared share-b "$tool" "$run"
      fs_down
    done
    # 20 concurrent CRI pulls of one cold image against one pull, through berthd.
    for conc in 1 20; do
      refs=()
      for _ in $(seq 1 $conc); do refs+=("${ref[share-a]}"); done
      concurrent_pulls berthd "concurrent-$conc" share-a "$run" "${refs[@]}"
    done
    # Five different images at once, and one small pull while a large one runs: berthd and
    # containerd's CRI, each from a fresh state.
    for tool in berthd containerd-cri; do
      case " $tools " in *" $tool "*) ;; *) continue ;; esac
      concurrent_pulls "$tool" five-at-once 5-images "$run" "${ref[small-files]}" \
        "${ref[share-a]}" "${ref[share-b]}" "${ref[index]}" "${ref[large-zstd]}"
      pull_during_pull "$tool" "$run"
    done
  done
fi

# --- medians ------------------------------------------------------------------------------------
table=$(awk -F'\t' '
  function median(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    if (n == 0) return "-"
    if (a[1] == "-") return "-"
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  NR == 1 { next }
  {
    k = $1 SUBSEP $2 SUBSEP $3
    if (!(k in seen)) { seen[k] = 1; keys[++nk] = k }
    u11 = (NF >= 11 && $11 != "") ? $11 : "-"
    v12 = (NF >= 12 && $12 != "") ? $12 : "-"
    if ($10 == 1) { w[k] = w[k] " " $5; c[k] = c[k] " " $6; r[k] = r[k] " " $7; d[k] = d[k] " " $8; f[k] = f[k] " " $9; u[k] = u[k] " " u11; fr[k] = fr[k] " " v12; n[k]++ }
    else { fail[k]++; fw[k] = $5 }
  }
  END {
    for (i = 1; i <= nk; i++) { k = keys[i]; mw[k] = median(w[k]) }
    print "| scenario | image | tool | runs | wall s | ×berth wall | CPU s | client RSS MB | daemon RSS MB | fetched MB | unpacked MB | first read s |"
    print "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for (i = 1; i <= nk; i++) {
      k = keys[i]; split(k, p, SUBSEP)
      base = p[1] SUBSEP p[2] SUBSEP "berth"
      if (p[1] ~ /^concurrent/) base = "concurrent-1" SUBSEP p[2] SUBSEP "berthd"
      if (p[1] == "five-at-once" || p[1] == "during-large") base = p[1] SUBSEP p[2] SUBSEP "berthd"
      ratio = "-"
      if (n[k] > 0 && (base in mw) && mw[base] != "-" && mw[base] > 0) ratio = sprintf("%.2f", mw[k] / mw[base])
      runs = n[k] + 0; if (fail[k]) runs = runs " (+" fail[k] " failed)"
      if (n[k] == 0) { printf "| %s | %s | %s | %s | failed after %s | | | | | | | |\n", p[1], p[2], p[3], runs, fw[k]; continue }
      printf "| %s | %s | %s | %s | %.2f | %s | %.2f | %s | %s | %s | %s | %s |\n", p[1], p[2], p[3], runs,
        mw[k], ratio, median(c[k]), median(r[k]), median(d[k]), median(f[k]), median(u[k]), median(fr[k])
    }
  }' "$raw")

# containerd+berth against containerd alone and against berthd (issue 15's targets, on large:
# ≥ 2.5× faster than containerd-cri, within 1.2× of berthd).
remote_ratios=$(echo "$table" | awk -F' *[|] *' '
  $2 == "cold" && $6 ~ /^[0-9.]+$/ { if (!($3 in seen)) { seen[$3] = 1; order[++n] = $3 } w[$3, $4] = $6 }
  END {
    for (i = 1; i <= n; i++) {
      m = order[i]
      if (!((m, "containerd+berth") in w) || w[m, "containerd+berth"] <= 0) continue
      printf "containerd+berth on %s: %s s", m, w[m, "containerd+berth"]
      if ((m, "containerd-cri") in w) printf ", %.2f× faster than containerd-cri (%s s)", w[m, "containerd-cri"] / w[m, "containerd+berth"], w[m, "containerd-cri"]
      if ((m, "berthd") in w) printf ", %.2f× berthd'"'"'s wall (%s s)", w[m, "containerd+berth"] / w[m, "berthd"], w[m, "berthd"]
      printf ". "
    }
  }')
[ -n "$remote_ratios" ] && remote_ratios="$remote_ratios(containerd+berth: daemon CPU and RSS are containerd's and berthd's summed; fetched = containerd's content store, which holds only the manifest and config when berth took every layer. Who fetched the blobs: ${remote_notes:-}) "
note="Medians of $runs run(s) each, interleaved. ×berth wall = tool's median wall / berth embedded's (concurrent rows: / one berthd pull; five-at-once and during-large rows: / berthd's). CPU = client user+sys plus the daemon's utime+stime over the pull (/proc/PID/stat; during-large rows: the daemon's CPU while the small pull ran, the large one's included); client RSS = /usr/bin/time %M; daemon RSS = VmHWM of a daemon started fresh for the run. fetched = size of the tool's content store after the pull (shared rows: growth from the second image); unpacked = du of the tool's snapshot directory (berth-erofs: its layer images); first read = from the pull's end to the first 4 KiB read in a new container view (\`berth mount\`, the first file \`find\` meets, \`head\`), pull's pages cached. Load average at the start: $load_start, at the end: $(cut -d" " -f1-3 /proc/loadavg). ${remote_ratios:-}${conc_failures:-}"
echo
echo "$facts"
echo
echo "$table"
echo
echo "$note"
{
  echo
  echo "## $facts"
  echo
  echo "$table"
  echo
  echo "$note Raw: \`$raw\`."
} >>bench/results.md
