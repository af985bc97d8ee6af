#!/usr/bin/env bash
# Boots a QEMU guest (TCG, 2 vCPUs) on a Debian kernel with an initramfs of
# busybox, our binaries, host tools and kernel modules, runs one scenario
# script in it, and returns the scenario's exit status (77 = skipped).
#
# Usage:
#   tests/guest/run-guest.sh --kernel sid|trixie|trixie-backports|patched|patched-debug|DIR \
#       --scenario FILE [--bin FILE]... [--tool NAME]... [--module NAME]... \
#       [--file SRC:DEST]... [--mem MB] [--timeout SEC] [--out DIR] [-- ARGS...]
#
#   --kernel    a Debian suite (fetched and cached by fetch-kernel.sh),
#               patched (Debian's 7.2 with the series in kernel/patches, built
#               or taken from the cache by kernel/build.sh), patched-debug
#               (the same with KASAN and kmemleak: kernel/build.sh --debug),
#               or a directory
#               holding vmlinuz, modules/ and version
#   --scenario  shell script run in the guest as `/scenario ARGS...`; it
#               sources /lib/ublkgw/guest-lib.sh for helpers
#   --bin       a binary of ours, installed in /usr/local/bin with its libraries
#   --tool      a host program (found on PATH), installed in /usr/local/bin (ahead
#               of busybox's applets) with its libraries
#   --module    a kernel module to pack (with its dependencies); the scenario
#               loads it with `load_module NAME`
#   --file      extra file or directory to pack at DEST (an ELF file brings
#               its libraries)
#   --out       where the guest's /out comes back to (default: a new dir
#               under ${TMPDIR:-/tmp}); the console log is kept there too
#
# Every run prints the kernel version it ran on. On failure the console log's
# path and its last lines are printed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kernel="" scenario="" out="" mem=1024 timeout=300
bins=() tools=() modules=() files=() args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kernel) kernel=$2; shift 2 ;;
    --scenario) scenario=$2; shift 2 ;;
    --bin) bins+=("$2"); shift 2 ;;
    --tool) tools+=("$2"); shift 2 ;;
    --module) modules+=("$2"); shift 2 ;;
    --file) files+=("$2"); shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --) shift; args=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; $d'; exit 0 ;;
    *) echo "run-guest: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n "$kernel" && -n "$scenario" ]] || { echo "run-guest: --kernel and --scenario are required (see --help)" >&2; exit 2; }
[[ -f "$scenario" ]] || { echo "run-guest: no scenario file '$scenario'" >&2; exit 2; }

for cmd in qemu-system-x86_64 cpio busybox xz; do
  command -v "$cmd" >/dev/null || {
    echo "run-guest: '$cmd' is missing: run scripts/install-deps.sh" >&2; exit 2; }
done

log() { echo "run-guest: $*" >&2; }

# --- the kernel -------------------------------------------------------------
if [[ -d "$kernel" ]]; then
  kdir=$kernel
elif [[ $kernel == patched ]]; then
  kdir=$("$here/../../kernel/build.sh" | tail -n1)
elif [[ $kernel == patched-debug ]]; then
  kdir=$("$here/../../kernel/build.sh" --debug | tail -n1)
else
  kdir=$("$here/fetch-kernel.sh" "$kernel" | tail -n1)
fi
kver=$(cat "$kdir/version")
log "kernel $kver ($kernel)"

# --- the initramfs ----------------------------------------------------------
name=$(basename "$scenario" .sh)
if [[ -z "$out" ]]; then
  out=$(mktemp -d "${TMPDIR:-/tmp}/ublkgw-guest-$name.XXXXXX")
fi
mkdir -p "$out"
rm -rf "$out/files"
work=$(mktemp -d "${TMPDIR:-/tmp}/ublkgw-initramfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib/ublkgw,etc,proc,sys,dev,tmp,run,out,root,mnt,var/tmp}

cp "$(command -v busybox)" "$root/bin/busybox"

# Copies every library an ELF file needs (as ldd resolves them on this
# host) to the same paths in the initramfs.
pack_libs_of() {
  local src=$1 lib
  while read -r lib; do
    [[ -n "$lib" && -e "$lib" && ! -e "$root$lib" ]] || continue
    mkdir -p "$(dirname "$root$lib")"
    cp -L "$lib" "$root$lib"
  done < <(ldd "$src" 2>/dev/null | awk '/=> \// {print $3} /^\t\// {print $1}')
}

# Copies an ELF file and its libraries.
pack_elf() {
  local src=$1 dest=$2
  mkdir -p "$(dirname "$root$dest")"
  cp -L "$src" "$root$dest"
  pack_libs_of "$src"
}

for b in "${bins[@]}"; do
  [[ -x "$b" ]] || { log "no binary '$b' (build first)"; exit 2; }
  pack_elf "$b" "/usr/local/bin/$(basename "$b")"
done
for t in "${tools[@]}"; do
  path=$(command -v "$t") || { log "tool '$t' is not installed on the host: run scripts/install-deps.sh"; exit 2; }
  pack_elf "$path" "/usr/local/bin/$t"
done
for f in "${files[@]}"; do
  src=${f%%:*} dest=${f#*:}
  mkdir -p "$(dirname "$root$dest")"
  cp -a "$src" "$root$dest"
  # A shared object (a plugin, say) brings its libraries along.
  if [[ -f "$src" && "$(head -c4 "$src" | tr -d '\0')" == $'\x7fELF' ]]; then
    pack_libs_of "$src"
  fi
done

# Kernel modules, decompressed on the host (busybox insmod may lack xz), with
# their dependencies; /lib/ublkgw/modules.deps has one line per module:
# "NAME DEP...", which load_module (guest-lib.sh) follows.
declare -A packed=()
: >"$root/lib/ublkgw/modules.deps"
pack_module() {
  local mod=$1 file deps dep
  [[ -z "${packed[$mod]:-}" ]] || return 0
  packed[$mod]=1
  file=""
  if [[ -d "$kdir/modules/kernel" ]]; then  # a kernel built by kernel/build.sh has none
    file=$(find "$kdir/modules/kernel" -name "$mod.ko" -o -name "$mod.ko.xz" -o -name "$mod.ko.zst" | head -n1)
  fi
  if [[ -z "$file" ]]; then
    if grep -q "/$mod.ko" "$kdir/modules/modules.builtin" 2>/dev/null; then
      return 0  # built into this kernel
    fi
    log "kernel $kver has no module '$mod'"
    exit 2
  fi
  mkdir -p "$root/lib/modules"
  case "$file" in
    *.xz) xz -dc "$file" >"$root/lib/modules/$mod.ko" ;;
    *.zst) zstd -qdc "$file" >"$root/lib/modules/$mod.ko" ;;
    *) cp "$file" "$root/lib/modules/$mod.ko" ;;
  esac
  deps=$(tr '\0' '\n' <"$root/lib/modules/$mod.ko" | sed -n 's/^depends=//p' | tr ',' ' ')
  for dep in $deps; do pack_module "$dep"; done
  echo "$mod $deps" >>"$root/lib/ublkgw/modules.deps"
}
for m in "${modules[@]}"; do pack_module "$m"; done

cp "$here/lib/guest-lib.sh" "$root/lib/ublkgw/guest-lib.sh"
cp "$scenario" "$root/scenario"
chmod +x "$root/scenario"
printf '%q ' "${args[@]}" >"$root/lib/ublkgw/scenario.args"
cp "$here/lib/init.sh" "$root/init"
chmod +x "$root/init"

initrd="$work/initrd.cpio"
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet >"$initrd")
log "initramfs $(( $(stat -c %s "$initrd") / 1024 / 1024 )) MiB; booting (timeout ${timeout}s)"

# --- boot -------------------------------------------------------------------
console="$out/console.log"
boot() {
  set +e
  timeout --kill-after=10 "$timeout" qemu-system-x86_64 \
    -machine q35 -cpu max -m "$mem" -smp 2 \
    -nographic -no-reboot -monitor none -serial stdio -nic none \
    -kernel "$kdir/vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 rdinit=/init panic=-1 tsc=reliable quiet loglevel=4" \
    </dev/null 2>&1 | tr -d '\r' | sed -u 's/\x1b\[[0-9;?]*[a-zA-Z]//g' | tee "$console" | sed -u -n '/^UBLKGW-OUT-BEGIN/,/^UBLKGW-OUT-END/!p'
  qemu_rc=${PIPESTATUS[0]}
  set -e
}
start=$(date +%s)
boot
# A kernel that dies before init runs (TCG has, rarely, crashed an early
# boot: an oops in the timer interrupt while unpacking the initramfs) never
# ran the scenario: boot once more, keeping the first console log. A
# failure once init has started is the scenario's and is never retried.
if ! grep -q 'UBLKGW-GUEST-KERNEL:' "$console" && [[ $qemu_rc -ne 124 && $qemu_rc -ne 137 ]]; then
  mv "$console" "$out/console.first-boot.log"
  log "the kernel died before the scenario started (console: $out/console.first-boot.log); booting again"
  boot
fi
elapsed=$(( $(date +%s) - start ))

# --- results ----------------------------------------------------------------
rc=$(sed -n 's/^UBLKGW-GUEST-EXIT: \([0-9]*\)$/\1/p' "$console" | tail -n1)
if grep -q '^UBLKGW-OUT-END' "$console"; then
  mkdir -p "$out/files"
  sed -n '/^UBLKGW-OUT-BEGIN/,/^UBLKGW-OUT-END/{//!p}' "$console" | base64 -d | tar -xzf - -C "$out/files" ||
    log "could not unpack the files the guest sent back"
fi
if [[ -z "$rc" ]]; then
  if [[ $qemu_rc -eq 124 || $qemu_rc -eq 137 ]]; then
    log "TIMEOUT: the guest did not finish within ${timeout}s"
  else
    log "the guest ended without reporting an exit status (qemu exit $qemu_rc)"
  fi
  log "console log: $console (last lines below)"
  tail -n 30 "$console" | sed 's/^/  | /' >&2
  exit 1
fi
log "scenario '$name' exited $rc on kernel $kver after ${elapsed}s; files in $out"
if [[ "$rc" -ne 0 && "$rc" -ne 77 ]]; then
  log "console log: $console"
fi
exit "$rc"
