#!/usr/bin/env bash
# Fetches a Debian kernel (image + modules) for the guest harness and caches
# it outside the checkout. Prints the directory holding `vmlinuz`,
# `modules/` and `version` on its last line of stdout.
#
# Usage: tests/guest/fetch-kernel.sh SUITE
#   SUITE: sid | trixie | trixie-backports
#
# The mirror is the one this machine's apt is configured with: its URI is
# read from /etc/apt/sources.list.d/debian.sources (or sources.list) at run
# time and reused for the extra suite, through a private apt configuration,
# so the machine's own package set is never mixed with the newer suite.
#
# Environment:
#   UBLKGW_CACHE  cache root (default /var/cache/ublkgw)
#   UBLKGW_KERNEL_REFRESH=1  re-resolve the version even if a cached one exists
set -euo pipefail

suite=${1:?usage: fetch-kernel.sh sid|trixie|trixie-backports}
case "$suite" in
  sid|trixie|trixie-backports) ;;
  *) echo "fetch-kernel: unknown suite '$suite' (sid, trixie, trixie-backports)" >&2; exit 2 ;;
esac
cache=${UBLKGW_CACHE:-/var/cache/ublkgw}
aptroot="$cache/apt-$suite"
kroot="$cache/kernels"
mkdir -p "$aptroot" "$kroot"

log() { echo "fetch-kernel[$suite]: $*" >&2; }

mirror_uri() {
  local uri=""
  if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
    # The first URIs: line that is not the security archive.
    uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i !~ /security/) {print $i; exit}}' \
      /etc/apt/sources.list.d/debian.sources)
  fi
  if [[ -z "$uri" && -r /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' \
      /etc/apt/sources.list)
  fi
  if [[ -z "$uri" ]]; then
    echo "fetch-kernel: cannot find the Debian mirror in this machine's apt configuration" >&2
    echo "  (looked for a URIs: line in /etc/apt/sources.list.d/debian.sources and a deb line in /etc/apt/sources.list)" >&2
    exit 1
  fi
  echo "$uri"
}

apt_private() {
  apt-get -q \
    -o Dir::Etc="$aptroot/etc" \
    -o Dir::Etc::sourcelist="$aptroot/etc/sources.list" \
    -o Dir::Etc::sourceparts="-" \
    -o Dir::Etc::preferencesparts="-" \
    -o Dir::State="$aptroot/state" \
    -o Dir::Cache="$aptroot/cache" \
    -o Debug::NoLocking=1 \
    -o APT::Get::List-Cleanup=0 \
    "$@"
}
apt_cache_private() {
  apt-cache \
    -o Dir::Etc="$aptroot/etc" \
    -o Dir::Etc::sourcelist="$aptroot/etc/sources.list" \
    -o Dir::Etc::sourceparts="-" \
    -o Dir::State="$aptroot/state" \
    -o Dir::Cache="$aptroot/cache" \
    "$@"
}

# Reuse a resolved kernel for a day unless told to refresh: versions leave the
# mirror, but a cached download stays valid.
stamp="$aptroot/resolved"
if [[ -z "${UBLKGW_KERNEL_REFRESH:-}" && -f "$stamp" ]] &&
   [[ $(( $(date +%s) - $(stat -c %Y "$stamp") )) -lt 86400 ]]; then
  ver=$(cat "$stamp")
  if [[ -f "$kroot/$ver/vmlinuz" && -f "$kroot/$ver/version" ]]; then
    log "cached $ver"
    echo "$kroot/$ver"
    exit 0
  fi
fi

exec 9>"$aptroot/lock"
flock 9

mkdir -p "$aptroot/etc/apt.conf.d" "$aptroot/etc/preferences.d" \
  "$aptroot/state/lists/partial" "$aptroot/cache/archives/partial"
uri=$(mirror_uri)
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" \
  >"$aptroot/etc/sources.list"
: >"$aptroot/state/status"
log "updating the package list of '$suite'"
if ! apt_private update >"$aptroot/update.log" 2>&1; then
  cat "$aptroot/update.log" >&2
  log "apt-get update failed for suite '$suite' (is the mirror reachable?)"
  exit 1
fi

# The metapackage depends on the versioned image package.
meta=linux-image-cloud-amd64
img=$(apt_cache_private depends "$meta" 2>/dev/null |
  awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [[ -z "$img" ]]; then
  log "cannot resolve $meta in '$suite'"
  exit 1
fi
ver=${img#linux-image-}
dest="$kroot/$ver"
if [[ -f "$dest/vmlinuz" && -f "$dest/version" ]]; then
  echo "$ver" >"$stamp"
  log "cached $ver"
  echo "$dest"
  exit 0
fi

# Newer kernels split the image package (linux-binary-*, linux-modules-*,
# linux-base-*); older ones hold everything in linux-image-*. Download the
# image and every linux-* dependency of the same version.
pkgs=("$img")
while read -r dep; do
  pkgs+=("$dep")
done < <(apt_cache_private depends "$img" 2>/dev/null |
  awk '/Depends: linux-/ {print $2}' | grep -F -- "$ver" | sort -u)
log "downloading ${pkgs[*]}"
work=$(mktemp -d "$kroot/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt_private download "${pkgs[@]}" >"$work/download.log" 2>&1) || {
  cat "$work/download.log" >&2
  log "download failed"
  exit 1
}
mkdir -p "$work/root"
for deb in "$work"/*.deb; do
  dpkg-deb -x "$deb" "$work/root"
done

vmlinuz=$(ls "$work"/root/boot/vmlinuz-"$ver" "$work"/root/usr/lib/modules/"$ver"/vmlinuz 2>/dev/null | head -n1 || true)
moddir=$(ls -d "$work"/root/usr/lib/modules/"$ver" "$work"/root/lib/modules/"$ver" 2>/dev/null | head -n1 || true)
if [[ -z "$vmlinuz" || -z "$moddir" ]]; then
  log "the downloaded packages hold no vmlinuz or modules for $ver"
  exit 1
fi
mkdir -p "$work/out"
cp "$vmlinuz" "$work/out/vmlinuz"
cp -a "$moddir" "$work/out/modules"
config=$(ls "$work"/root/boot/config-"$ver" "$moddir"/config 2>/dev/null | head -n1 || true)
[[ -n "$config" ]] && cp "$config" "$work/out/config"
echo "$ver" >"$work/out/version"
rm -rf "$dest"
mv "$work/out" "$dest"
echo "$ver" >"$stamp"
log "ready: $ver"
echo "$dest"
