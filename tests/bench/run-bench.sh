#!/usr/bin/env bash
# The benchmark: ublkgw (copy and zero copy) against the kernel's own NBD
# client, side by side in one QEMU guest, against the same nbdkit server.
# Not a test: it measures, and writes what it measured.
#
# Usage: tests/bench/run-bench.sh [--kernel sid] [--runtime SEC] [--rounds N]
#          [--queues N] [--servers memory,null] [--jobs LIST] [--send-variants]
#          [--baseline REV] [--fused] [--together] [--fio-cpus LIST] [--no-nbd]
#          [--netns] [--out DIR]
#
#   --kernel   the guest's kernel (a Debian suite, default sid: zero copy
#              needs 6.16+, and RECV into fixed buffers 7.2; or patched:
#              sid's 7.2 with kernel/patches, built by kernel/build.sh)
#   --runtime  seconds per fio run (default 5)
#   --rounds   times every job runs on every system, interleaved (default 2)
#   --queues   ublkgw queues = kernel nbd connections (default 2)
#   --servers  what serves the export (default memory,null): nbdkit's memory
#              and null plugins (null answers without touching data, a
#              ceiling for the clients), qemu-nbd and nbd-server (each on a
#              raw file in the guest's tmpfs)
#   --jobs     NAME:RW:BS:QD,... (default: 4k random read and write at QD1 and
#              QD32, 128k and 1M sequential read and write at QD8)
#   --send-variants  write jobs also run on zero copy with SEND only and with
#              SEND_ZC only, to see which wins at which size (by default
#              ublkgw sends with SEND; ublkgwd --send-zc-min-bytes opts in)
#   --baseline also run ublkgw as built from git revision REV (copy and
#              zero copy, shown as base-copy and base-zero-copy) in the same
#              guest, interleaved with this tree's: old against new in one
#              run, where the machine's drift cannot tell them apart. Each
#              volume runs back to back with its old twin, the pair's order
#              swapping every round; table.md then gives each job's median
#              ratio, its 95% confidence interval and a verdict (see
#              docs/BENCHMARKS.md, "Is the new code slower?")
#   --together with --baseline or --fused: each pair runs at the same time,
#              one fio job per volume in one fio process, instead of back to
#              back. Both then see the same seconds of the machine, so its
#              drift cannot favour either; they share its CPUs, so the
#              ratio says which moves more I/O under the same load, not
#              what either does alone (docs/BENCHMARKS.md)
#   --fio-cpus fio runs only on these guest CPUs (fio's --cpus_allowed, e.g.
#              0), so where the scheduler puts it varies less between runs
#   --no-nbd   with --baseline or --fused: leave the kernel's client out of
#              the rounds, to spend the run on the pairs
#   --fused    also run ublkgw's fused data path (ublkgw-fused), back to
#              back with zero copy in each round; needs --kernel patched.
#              table.md then compares the two as it does old and new
#   --netns    the server in a network namespace of its own, reached over a
#              veth pair (10.77.0.2 from 10.77.0.1), not over loopback: the
#              path a remote server's packets take through the stack, less
#              the wire
#   --out      where results go (default /var/cache/ublkgw/bench/latest):
#              results.json, table.md, and one PNG per server
#
# Builds a Release ublkgw in /var/cache/ublkgw/bench-build (outside the
# checkout), fetches the kernel like the guest tests do, and installs what
# it needs (scripts/install-deps.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
command_line="tests/bench/run-bench.sh $*"

kernel=sid runtime=5 rounds=2 queues=2 servers=memory,null send_variants=0 baseline= with_nbd=1 fused=0 together=0 fio_cpus= netns=0
jobs="randread-4k-qd1:randread:4k:1,randread-4k-qd32:randread:4k:32"
jobs+=",randwrite-4k-qd1:randwrite:4k:1,randwrite-4k-qd32:randwrite:4k:32"
jobs+=",read-128k:read:128k:8,write-128k:write:128k:8,read-1m:read:1m:8,write-1m:write:1m:8"
out=/var/cache/ublkgw/bench/latest
while [[ $# -gt 0 ]]; do
  case $1 in
    --kernel) kernel=$2; shift 2 ;;
    --runtime) runtime=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --queues) queues=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --send-variants) send_variants=1; shift ;;
    --baseline) baseline=$2; shift 2 ;;
    --no-nbd) with_nbd=0; shift ;;
    --fused) fused=1; shift ;;
    --together) together=1; shift ;;
    --fio-cpus) fio_cpus=$2; shift 2 ;;
    --netns) netns=1; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; $d'; exit 0 ;;
    *) echo "run-bench: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ $fused = 0 || $kernel = patched ]] || {
  echo "run-bench: --fused needs --kernel patched (the fused command is only in kernel/patches)" >&2
  exit 2; }
[[ $with_nbd = 1 || -n $baseline || $fused = 1 ]] || {
  echo "run-bench: --no-nbd leaves nothing to compare without --baseline REV or --fused" >&2
  exit 2; }
[[ $together = 0 || -n $baseline || $fused = 1 ]] || {
  echo "run-bench: --together runs pairs at once: it needs --baseline REV or --fused" >&2
  exit 2; }
[[ $fio_cpus =~ ^[0-9,-]*$ ]] || {
  echo "run-bench: --fio-cpus takes a CPU list such as 0 or 0-1" >&2; exit 2; }
[[ $runtime =~ ^[1-9][0-9]*$ && $rounds =~ ^[1-9][0-9]*$ && $queues =~ ^[1-9][0-9]?$ ]] || {
  echo "run-bench: --runtime, --rounds and --queues take positive whole numbers" >&2; exit 2; }

"$root/scripts/install-deps.sh"
build=/var/cache/ublkgw/bench-build
# The tests' compiler cache, when there is one: a trial's two builds
# compile only what they do not share.
. "$root/scripts/lib/ccache.sh"
echo "run-bench: building a Release ublkgw in $build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${cache[@]}" >/dev/null
ninja -C "$build" ublkgwd ublkgw >/dev/null
base_files=()
if [[ -n $baseline ]]; then
  rev=$(git -C "$root" rev-parse --verify --quiet "$baseline^{commit}") || {
    echo "run-bench: --baseline '$baseline' is not a commit of $root (try a hash from git log)" >&2
    exit 2; }
  # Kept per revision, so a second run against the same baseline builds nothing.
  base_src=/var/cache/ublkgw/bench-base/$rev/src base_build=/var/cache/ublkgw/bench-base/$rev/build
  echo "run-bench: building the baseline ${rev:0:12} in $base_build"
  if [[ ! -f $base_src/CMakeLists.txt ]]; then
    rm -rf "$base_src" && mkdir -p "$base_src"
    git -C "$root" archive "$rev" | tar -x -C "$base_src"
  fi
  cmake -S "$base_src" -B "$base_build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${cache[@]}" \
    >/dev/null
  ninja -C "$base_build" ublkgwd ublkgw >/dev/null
  base_files=(--file "$base_build/gateway/control/ublkgwd:/usr/local/bin/ublkgwd-base"
    --file "$base_build/gateway/cli/ublkgw:/usr/local/bin/ublkgw-base")
fi
if [[ $kernel = patched ]]; then
  "$root/kernel/build.sh" >/dev/null
else
  "$root/tests/guest/fetch-kernel.sh" "$kernel"
fi

n_jobs=$(tr ',' '\n' <<<"$jobs" | wc -l)
for s in ${servers//,/ }; do
  case $s in
    memory|null|qemu-nbd|nbd-server) ;;
    *) echo "run-bench: unknown server '$s' (memory, null, qemu-nbd, nbd-server)" >&2; exit 2 ;;
  esac
done
n_servers=$(tr ',' '\n' <<<"$servers" | wc -l)
# fio runs per job and round: a pair run together is one.
n_systems=$((2 + with_nbd + fused + (send_variants ? 2 : 0) + (${#base_files[@]} ? 2 : 0)))
((together)) && n_systems=$((n_systems - fused - (${#base_files[@]} ? 2 : 0)))
runs=$((n_jobs * n_servers * rounds * n_systems))
timeout=$((runs * (runtime + 4) + 300))
echo "run-bench: $runs fio runs of ${runtime}s on $kernel (about $((runs * (runtime + 2) / 60)) min)"

netns_args=()
[[ $netns = 1 ]] && netns_args=(--module veth --module sch_netem --tool ip)
plugins=/usr/lib/x86_64-linux-gnu/nbdkit/plugins
rm -rf "$out.guest"
mkdir -p "$out"
"$root/tests/guest/run-guest.sh" --kernel "$kernel" --scenario "$here/bench-guest.sh" \
  --bin "$build/gateway/control/ublkgwd" --bin "$build/gateway/cli/ublkgw" \
  --module ublk_drv --module nbd --tool nbdkit --tool fio --tool nbd-client \
  --tool qemu-nbd --tool nbd-server "${netns_args[@]}" \
  --file "$plugins/nbdkit-memory-plugin.so:$plugins/nbdkit-memory-plugin.so" \
  --file "$plugins/nbdkit-null-plugin.so:$plugins/nbdkit-null-plugin.so" \
  "${base_files[@]}" --mem 2048 --timeout "$timeout" --out "$out.guest" \
  -- "$runtime" "$rounds" "$queues" "$servers" "$jobs" "$send_variants" "$((${#base_files[@]} ? 1 : 0))" "$with_nbd" "$fused" "$together" "$fio_cpus" "$netns"

python3 "$here/report.py" --guest-out "$out.guest" --out "$out" \
  --command "$command_line" --queues "$queues" --runtime "$runtime" \
  --rounds "$rounds"
echo "run-bench: results in $out (results.json, table.md, *.png)"
