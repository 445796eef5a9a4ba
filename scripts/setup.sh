#!/usr/bin/env bash
# Installs every package berth needs to build, test and benchmark, from Debian 12's own archive.
# Idempotent: a second run on a prepared machine only checks what is there.
set -euo pipefail

packages=(
  # toolchain
  cmake g++ make pkg-config ninja-build git
  # a faster linker, used when present (BERTH_MOLD in CMakeLists.txt)
  mold
  # the sanitizer and fuzz build (scripts/test.sh): clang 14 with its ASan/UBSan/libFuzzer runtimes
  clang libclang-rt-14-dev
  # the code gates (scripts/lint.sh): clang-format and clang-tidy 14
  clang-format clang-tidy
  # libraries
  libcurl4-openssl-dev libssl-dev nlohmann-json3-dev libtomlplusplus-dev libspdlog-dev libfmt-dev
  libcli11-dev libexpected-dev libsqlite3-dev libarchive-dev zlib1g-dev libdeflate-dev libisal-dev
  libzstd-dev libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libgtest-dev libgmock-dev libbenchmark-dev
  # test peers and tools
  docker-registry openssl apache2-utils curl
  # metrics tests (test/integration/metrics_test.cc): promtool, and a Prometheus server the test
  # starts itself on loopback (the package's own service is not used)
  prometheus
  # unpack tests: the reference unpacker, a static busybox to run, OCI runtimes, an image copier
  umoci busybox-static crun runc skopeo
  # the Debian package (debian/, scripts/package_check.sh) and the manual page check (groff)
  debhelper dpkg-dev groff-base man-db
  # the CLI's terminal output, checked on a real terminal (test/integration/cli_test.cc)
  tmux
  # erofs tests: fsck.erofs and dump.erofs check the images berth/erofs writes
  erofs-utils
  # the peers cluster test (test/integration/peers_cluster_test.cc): dnsmasq as the cluster's DNS
  # in a network namespace, tc (iproute2) for slow links
  dnsmasq-base iproute2
  # containerd end-to-end tests (test/containerd): containerd 1.6 with its shim and ctr, runc
  # (above), CNI plugins, and a static libc for the pause image (gcc -static)
  containerd containernetworking-plugins libc6-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${#missing[@]} package(s): ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian docker-registry package starts a system registry on :5000; berth's tests start their
# own on free loopback ports and never need it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
# Likewise the prometheus package's own server (:9090): the metrics tests start their own, with
# their own config and storage, on a free loopback port.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
echo "setup: all ${#packages[@]} packages present"
