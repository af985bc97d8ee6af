#!/usr/bin/env bash
# Soak test (not run by CI; for benchmark and release checks): random
# faults (server kills and stalls, link cuts, netem, daemon crashes and
# upgrades) for a bounded time against ext4 on a volume under fio with
# verify, in a QEMU guest. See soak-guest.sh for what is checked.
#
# Usage: tests/soak/run-soak.sh [--minutes N] [--kernel SUITE] [--build DIR]
#                               [-- UBLKGWD_ARGS...]
#   --minutes  how long faults strike (default 10)
#   --kernel   the guest kernel: sid (default), trixie, trixie-backports
#   --build    the build holding gateway/control/ublkgwd and gateway/cli/ublkgw
#              (default: build/release, else build/asan; scripts/test.sh
#              makes both)
#   after --   more ublkgwd options, e.g. -- --send-zc-min-bytes 65536
# Prints one line per fault, and a summary; exit 0 when everything held.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
minutes=10 kernel=sid build="" daemon_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --kernel) kernel=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --) shift; daemon_args=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; $d'; exit 0 ;;
    *) echo "run-soak: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$minutes" =~ ^[1-9][0-9]*$ ]] || { echo "run-soak: --minutes takes a whole number, not '$minutes'" >&2; exit 2; }
if [[ -z "$build" ]]; then
  for b in "$root/build/release" "$root/build/asan"; do
    [[ -x "$b/gateway/control/ublkgwd" ]] && { build=$b; break; }
  done
fi
[[ -n "$build" && -x "$build/gateway/control/ublkgwd" ]] ||
  { echo "run-soak: no ublkgwd built: run scripts/test.sh first, or give --build DIR" >&2; exit 2; }
plugin=/usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-file-plugin.so
out=${TMPDIR:-/tmp}/ublkgw-soak.$$
seconds=$((minutes * 60))
echo "run-soak: $minutes min of faults on $kernel with $build; output in $out"
exec "$root/tests/guest/run-guest.sh" --kernel "$kernel" --scenario "$here/soak-guest.sh" \
  --bin "$build/gateway/control/ublkgwd" --bin "$build/gateway/cli/ublkgw" \
  --module ublk_drv --module veth --module sch_netem \
  --tool nbdkit --tool fio --tool ip --tool tc --tool mkfs.ext4 --tool e2fsck \
  --file "$plugin:$plugin" --mem 1536 --timeout $((seconds + 600)) --out "$out" -- "$seconds" "${daemon_args[@]}"
