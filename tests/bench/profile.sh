#!/usr/bin/env bash
# Where the CPU goes: fio jobs on ublkgw copy, ublkgw zero copy and the
# kernel's nbd client in one guest, each under `perf record -a -g`. For
# each system and job it writes to OUT a flame graph (flame-SYSTEM-JOB.svg:
# the wider a frame, the more of the samples it was on; kernel frames end
# in _[k]), its folded stacks, and perf reports (by command/DSO, by
# symbol, and the daemon's own). It prints a table: each system's IOPS per
# job, and ublkgw's RECVs and io_uring_enter calls per I/O. For explaining
# the benchmark's figures; not a test: compare systems within one run.
#
# Usage: tests/bench/profile.sh [--job RW:BS:QD]... [--runtime SEC] [--queues N]
#          [--kernel sid] [--build DIR] [--out DIR]
#   defaults: --job randread:4k:32 --runtime 5 --queues 2
#             --out /var/cache/ublkgw/bench/profile
#   --job     repeat it to profile several jobs in the one guest
#   --out     say, a benchmark run's --out directory, to keep the graphs
#             next to its table
#   --build   profile the ublkgwd and ublkgw of this CMake build directory
#             (say, an old revision's, as run-bench.sh --baseline keeps them
#             in /var/cache/ublkgw/bench-base/REV) instead of building this
#             tree with symbols
# Example: tests/bench/profile.sh --job randread:4k:32 --job read:1M:4
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
jobs=() runtime=5 queues=2 kernel=sid out=/var/cache/ublkgw/bench/profile build=
while [[ $# -gt 0 ]]; do
  case $1 in
    --job) jobs+=("$2"); shift 2 ;;
    --runtime) runtime=$2; shift 2 ;;
    --queues) queues=$2; shift 2 ;;
    --kernel) kernel=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; $d'; exit 0 ;;
    *) echo "profile: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ ${#jobs[@]} -gt 0 ]] || jobs=(randread:4k:32)
for job in "${jobs[@]}"; do
  IFS=: read -r rw bs qd <<<"$job"
  [[ -n $rw && -n $bs && $qd =~ ^[0-9]+$ ]] ||
    { echo "profile: --job is RW:BS:QD (say randread:4k:32), not '$job'" >&2; exit 2; }
done
"$root/scripts/install-deps.sh"
command -v perf >/dev/null || apt-get install -y -q linux-perf
if [[ -z $build ]]; then
  build=/var/cache/ublkgw/profile-build
  # The tests' compiler cache, when there is one: a rebuild compiles only
  # what changed.
  . "$root/scripts/lib/ccache.sh"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${cache[@]}" >/dev/null
  ninja -C "$build" ublkgwd ublkgw >/dev/null
fi
for bin in gateway/control/ublkgwd gateway/cli/ublkgw; do
  [[ -x $build/$bin ]] || { echo "profile: no $build/$bin (build it first)" >&2; exit 2; }
done
"$root/tests/guest/fetch-kernel.sh" "$kernel"
plugins=/usr/lib/x86_64-linux-gnu/nbdkit/plugins
rm -rf "$out"
"$root/tests/guest/run-guest.sh" --kernel "$kernel" --scenario "$here/profile-guest.sh" \
  --bin "$build/gateway/control/ublkgwd" --bin "$build/gateway/cli/ublkgw" \
  --module ublk_drv --module nbd --tool nbdkit --tool fio --tool nbd-client --tool perf \
  --file "$plugins/nbdkit-memory-plugin.so:$plugins/nbdkit-memory-plugin.so" \
  --mem 2048 --timeout $((600 + 300 * ${#jobs[@]})) --out "$out" -- "$runtime" "$queues" "${jobs[@]}"
# A flame graph per system and job, from the samples' stacks.
for script in "$out"/files/perf-*.script; do
  run=$(basename "$script" .script)
  run=${run#perf-}
  python3 "$here/flamegraph.py" fold "$script" >"$out/stacks-$run.folded"
  python3 "$here/flamegraph.py" svg "$out/stacks-$run.folded" "$run, ublkgw $(git -C "$root" \
    describe --always --dirty 2>/dev/null || echo '?')" >"$out/flame-$run.svg"
  rm -f "$script"  # large; the folded stacks hold what the graph needs
done
# A line per system and job: its IOPS, and for ublkgw the RECVs and
# enters per I/O.
python3 - "$out/files" "${jobs[@]}" <<'PY'
import json, os, sys
d = sys.argv[1]
for spec in sys.argv[2:]:
    rw, bs, qd = spec.split(":")
    name = f"{rw}-{bs}-qd{qd}"
    for system in ("ublkgw-copy", "ublkgw-zero-copy", "kernel-nbd"):
        run = f"{system}-{name}"
        job = json.load(open(f"{d}/fio-{run}.json"))["jobs"][0]
        ops = job["read"]["total_ios"] + job["write"]["total_ios"]
        iops = job["read"]["iops"] + job["write"]["iops"]
        line = f"profile: {name:18} {system:17} {iops:8.0f} IOPS"
        if os.path.exists(f"{d}/stats-{run}-after.json"):
            a, b = (json.load(open(f"{d}/stats-{run}-{w}.json"))["stats"] for w in ("after", "before"))
            per = lambda k: (int(a.get(k, 0)) - int(b.get(k, 0))) / max(ops, 1)
            line += f", {per('socket_recvs'):.2f} RECVs/IO, {per('ring_enters'):.2f} enters/IO"
        print(line)
PY
echo "profile: flame graphs in $out/flame-*.svg, reports in $out/files/perf-*.txt"
