#!/usr/bin/env bash
# The Debian package, end to end (CI runs it from scripts/test.sh): builds the .deb from an
# existing build of this tree ($BERTH_BUILD_DIR, default build; debian/rules'
# BERTH_DEB_BUILD_DIR, so nothing is compiled twice), installs it with dpkg -i, checks what it
# installed, runs the demo against the installed berth and berthd, purges it, and checks that
# the purge left nothing behind. Needs root and a machine where installing berth is acceptable.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
build_dir=$(realpath "${BERTH_BUILD_DIR:-build}")
out=$(mktemp -d /tmp/berth-package.XXXXXX)
trap 'dpkg -P berth >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
fail() { echo "package_check.sh: $*" >&2; exit 1; }

if dpkg-query -W -f='${Status}' berth 2>/dev/null | grep -q "installed"; then
  fail "a berth package is already installed here; remove it first (dpkg -P berth)"
fi

# dpkg-buildpackage writes next to the source tree: build from a copy of the tracked files.
git ls-files -z | (cd "$repo" && tar --null -T - -cf -) | (mkdir "$out/berth" && cd "$out/berth" && tar -xf -)
start=$(date +%s)
(cd "$out/berth" && BERTH_DEB_BUILD_DIR=$build_dir dpkg-buildpackage -us -uc -b) \
  >"$out/build.log" 2>&1 || { tail -n 40 "$out/build.log"; fail "dpkg-buildpackage failed"; }
deb=$(ls "$out"/berth_*.deb)
echo "package_check.sh: built $(basename "$deb") in $(( $(date +%s) - start )) s"

before=$(mktemp "$out/before.XXXXXX")
find /etc /usr /lib /var/lib -xdev 2>/dev/null | sort >"$before"
dpkg -i "$deb" >"$out/install.log" 2>&1 || { cat "$out/install.log"; fail "dpkg -i failed"; }
for path in /usr/bin/berth /usr/bin/berthd /etc/berth/config.toml \
    /lib/systemd/system/berthd.service /usr/share/man/man1/berth.1.gz \
    /usr/share/man/man8/berthd.8.gz /usr/share/man/man5/berth-config.5.gz \
    /usr/share/bash-completion/completions/berth; do
  [ -e "$path" ] || fail "the package did not install $path"
done
dpkg-query -W -f='${Conffiles}\n' berth | grep -q '/etc/berth/config.toml' ||
  fail "/etc/berth/config.toml is not a conffile"
/usr/bin/berthd --version | grep -q "^berthd $(dpkg-query -W -f='${Version}' berth)\$" ||
  fail "berthd --version does not print the package's version"
man -l /usr/share/man/man5/berth-config.5.gz 2>&1 | grep -q "pull.max_concurrent_downloads" ||
  fail "berth-config(5) does not read as a manual page"

BERTH_DEMO_SKIP_BUILD=1 BERTH_BUILD_DIR=$build_dir BERTH_DEMO_BIN_DIR=/usr/bin \
  bash scripts/demo.sh >"$out/demo.log" 2>&1 || { tail -n 40 "$out/demo.log"; fail "the demo failed"; }
echo "package_check.sh: the demo ran on the installed berth and berthd"

dpkg -P berth >"$out/purge.log" 2>&1 || { cat "$out/purge.log"; fail "dpkg -P failed"; }
after=$(mktemp "$out/after.XXXXXX")
find /etc /usr /lib /var/lib -xdev 2>/dev/null | sort >"$after"
# A purge may leave what dpkg itself keeps about packages (its database and logs).
left=$(comm -13 "$before" "$after" | grep -v '^/var/lib/dpkg/' || true)
[ -z "$left" ] || fail "the purge left: $left"
echo "package_check.sh: installed, ran and purged cleanly"
