#!/usr/bin/env bash
# Builds the guests' kernel with the series in kernel/patches applied:
# Debian's linux-source-7.2 from this machine's configured mirror, the
# patches, `make tinyconfig` plus kernel/config/*.config, then a bzImage with
# everything the guest tests use built in.
#
# The result is cached outside the checkout, keyed by a hash of the source
# version, the patches, the config fragments and this script, so a run whose
# inputs did not change reuses it in a second, and CI rebuilds only when they
# change. Compiled objects go through ccache, so a rebuild after a change to
# one patch recompiles only what that patch touched.
#
# Usage: kernel/build.sh [--jobs N] [--debug]
#   --jobs        parallel make jobs (default: the number of CPUs)
#   --debug       also config/debug.config: KASAN and kmemleak, for the
#                 series' memory checks (ublk-mem.sh --fused reports what
#                 they find); cached apart, as ublkgw-guest-debug
#
# Prints, as its last line of stdout, a directory the guest harness boots
# (tests/guest/run-guest.sh --kernel DIR): vmlinuz, modules/modules.builtin,
# config, version, and base (the exact source package and the patches).
#
# Environment:
#   UBLKGW_CACHE  cache root (default /var/cache/ublkgw)
#   CCACHE_DIR    compiler cache (default $UBLKGW_CACHE/ccache)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
jobs=$(nproc)
debug=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --jobs) jobs=$2; shift 2 ;;
    --debug) debug=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "kernel/build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
fragments=("$here/config/guest.config")
[[ $debug = 0 ]] || fragments+=("$here/config/debug.config")
"$here/../scripts/install-deps.sh" >&2

# The series is made on this exact source: Debian's 7.2.13-1, the source of
# the 7.2.13+deb14-cloud kernel the other guests boot.
source_pkg=linux-source-7.2
source_ver=7.2.13-1

cache=${UBLKGW_CACHE:-/var/cache/ublkgw}
log() { echo "kernel/build: $*" >&2; }

series=()
while IFS= read -r p; do series+=("$p"); done \
  < <(find "$here/patches" -maxdepth 1 -name '[0-9][0-9][0-9][0-9]-*.patch' ! -name '0000-*' | sort)

key=$( { echo "$source_pkg $source_ver"; cat "${series[@]}" "${fragments[@]}" "$0"; } |
  sha256sum | cut -c1-16)
name=ublkgw-guest$([[ $debug = 0 ]] || echo -debug)
out="$cache/kernels/$name-$key"
if [[ -f "$out/vmlinuz" && -f "$out/version" ]]; then
  log "cached $(cat "$out/version") in $out"
  echo "$out"
  exit 0
fi

mkdir -p "$cache/kernels" "$cache/kernel-src"
exec 9>"$cache/kernel-build.lock"
flock 9

# --- the source --------------------------------------------------------------
deb="$cache/kernel-src/${source_pkg}_${source_ver}_all.deb"
if [[ ! -f "$deb" ]]; then
  suite_aptroot="$cache/apt-sid"
  # shellcheck source=../scripts/lib/debian-suite.sh
  source "$here/../scripts/lib/debian-suite.sh"
  log "fetching $source_pkg $source_ver from the configured Debian mirror (sid)"
  suite_update sid
  if ! (cd "$cache/kernel-src" &&
        suite_apt_get download "$source_pkg=$source_ver" >"$cache/kernel-src/download.log" 2>&1); then
    cat "$cache/kernel-src/download.log" >&2
    have=$(suite_apt_cache policy "$source_pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
    log "cannot download $source_pkg $source_ver (the mirror offers: ${have:-nothing})."
    log "The series is made on $source_ver; to move it, rebase kernel/patches on the new"
    log "source and change source_ver in kernel/build.sh."
    exit 1
  fi
fi

work="$cache/kernel-build/$name"
tree="$work/linux"
rm -rf "$work"
mkdir -p "$work"
log "unpacking $source_pkg $source_ver"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" --wildcards './usr/src/*.tar.xz'
tar -xJf "$work/usr/src/$source_pkg.tar.xz" -C "$work"
mv "$work/$source_pkg" "$tree"
rm -rf "$work/usr"

for p in "${series[@]}"; do
  log "applying $(basename "$p")"
  if ! git -C "$tree" apply --whitespace=error-all "$p"; then
    log "$(basename "$p") does not apply to $source_pkg $source_ver"
    exit 1
  fi
done

# --- the configuration -------------------------------------------------------
export KBUILD_BUILD_USER=ublkgw KBUILD_BUILD_HOST=ublkgw
export CCACHE_DIR=${CCACHE_DIR:-$cache/ccache}
export CCACHE_BASEDIR=$tree CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-4G}
makeflags=(-C "$tree" -j"$jobs" CC="ccache gcc" LOCALVERSION=)
config_failed() {
  tail -n 20 "$work/config.log" >&2
  log "configuring the kernel failed (log: $work/config.log)"
  exit 1
}
make "${makeflags[@]}" tinyconfig >"$work/config.log" 2>&1 || config_failed
localversion="-$name"
printf 'CONFIG_LOCALVERSION="%s"\n# CONFIG_LOCALVERSION_AUTO is not set\n' "$localversion" \
  >"$work/localversion.config"
(cd "$tree" && scripts/kconfig/merge_config.sh -m .config "${fragments[@]}" \
  "$work/localversion.config") >>"$work/config.log" 2>&1 || config_failed
make "${makeflags[@]}" olddefconfig >>"$work/config.log" 2>&1 || config_failed
# merge_config only warns when an option does not survive (a dependency is
# off, or the name is wrong): a config that silently lost ublk would boot
# and fail every test far from the cause. Check every =y line landed, and
# that nothing a fragment turns off came back (another option selects it).
lost=()
while IFS= read -r line; do
  grep -qxF "$line" "$tree/.config" || lost+=("$line")
done < <(grep -h '^CONFIG_[A-Z0-9_]*=y$' "${fragments[@]}")
while IFS= read -r option; do
  grep -q "^$option=" "$tree/.config" && lost+=("# $option is not set")
done < <(grep -h '^# CONFIG_[A-Z0-9_]* is not set$' "${fragments[@]}" | awk '{print $2}')
if [[ ${#lost[@]} -gt 0 ]]; then
  log "these options of the config fragments did not survive olddefconfig"
  log "(a dependency is missing or selects it, or the name is wrong): ${lost[*]}"
  exit 1
fi

# --- the build ---------------------------------------------------------------
log "building bzImage with $jobs jobs (log: $work/build.log)"
start=$(date +%s)
ccache --zero-stats >/dev/null 2>&1 || true
if ! make "${makeflags[@]}" bzImage modules >"$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log" >&2
  log "the build failed (log: $work/build.log)"
  exit 1
fi
version=$(make -s "${makeflags[@]}" kernelrelease)
log "built $version in $(( $(date +%s) - start )) s; ccache: $(ccache --print-stats 2>/dev/null | awk -F'\t' '
  $1 == "direct_cache_hit" || $1 == "preprocessed_cache_hit" { hits += $2 }
  $1 == "cache_miss" { misses = $2 }
  END { printf "%d hits, %d misses", hits, misses }')"

stage="$work/out"
mkdir -p "$stage/modules"
cp "$tree/arch/x86/boot/bzImage" "$stage/vmlinuz"
cp "$tree/.config" "$stage/config"
cp "$tree/modules.builtin" "$stage/modules/modules.builtin"
echo "$version" >"$stage/version"
{
  echo "source: $source_pkg $source_ver (Debian)"
  for p in "${series[@]}"; do echo "patch: $(basename "$p")"; done
} >"$stage/base"
rm -rf "$out"
mv "$stage" "$out"
# The tree is 2 GB: keep only the result (ccache holds the objects).
rm -rf "$work"
log "ready: $version in $out"
echo "$out"
