#!/usr/bin/env bash
# Installs the peers the benchmark suite compares berth against, from Debian only:
# containerd 1.6 (+ ctr), podman, skopeo, runc, and GNU time. Not part of the test setup.
#
#   sudo bash bench/setup-peers.sh
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(containerd podman skopeo runc time e2fsprogs bc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian's containerd package starts a system containerd; the suite runs its own instance
# (own root, state and socket), so the system one is only stopped to keep it out of the way.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet containerd 2>/dev/null; then
  systemctl stop containerd || true
fi
containerd --version
ctr --version
podman --version
skopeo --version
