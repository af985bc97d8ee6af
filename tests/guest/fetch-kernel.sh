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

suite_aptroot=$aptroot
# shellcheck source=../../scripts/lib/debian-suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/debian-suite.sh"

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

log "updating the package list of '$suite'"
suite_update "$suite" || exit 1

# The metapackage depends on the versioned image package.
meta=linux-image-cloud-amd64
img=$(suite_apt_cache depends "$meta" 2>/dev/null |
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
done < <(suite_apt_cache depends "$img" 2>/dev/null |
  awk '/Depends: linux-/ {print $2}' | grep -F -- "$ver" | sort -u)
log "downloading ${pkgs[*]}"
work=$(mktemp -d "$kroot/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && suite_apt_get download "${pkgs[@]}" >"$work/download.log" 2>&1) || {
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
