#!/bin/sh
# Guest half of tests/bench/profile.sh: one fio job on each system (ublkgw
# copy, ublkgw zero copy, kernel nbd) against nbdkit memory, under
# `perf record -a` (cpu-clock: a TCG guest has no PMU), and a report per
# system: where the guest's CPU goes, by command and symbol. For ublkgw,
# `ublkgw stats --json` before and after the job too (RECVs and
# io_uring_enter calls per I/O are their difference over the ops'), and
# the samples' stacks (`perf script`) for the host to draw as flame graphs.
# Usage: profile-guest.sh RUNTIME QUEUES RW:BS:QD...
. /lib/ublkgw/guest-lib.sh
runtime=$1 queues=$2
shift 2
fio=/usr/local/bin/fio
perf=/usr/local/bin/perf

load_module ublk_drv
load_module nbd
wait_for_path /dev/ublk-control 10
wait_for_path /dev/nbd0 10
mount -t debugfs none /sys/kernel/debug 2>/dev/null
echo 0 >/proc/sys/kernel/kptr_restrict
echo -1 >/proc/sys/kernel/perf_event_paranoid
nbdkit -f -i 127.0.0.1 -p 10809 memory 1G >/out/nbdkit.log 2>&1 &
wait_for_listen 10809 20
ublkgwd --state-dir '' >/out/ublkgwd.log 2>&1 &
wait_for_path /run/ublkgw/ublkgw.sock 20
copy=$(ublkgw attach nbd://127.0.0.1:10809/ --queues "$queues" --data-path copy) || fail "attach"
zc=$(ublkgw attach nbd://127.0.0.1:10809/ --queues "$queues" --data-path zero-copy) || fail "attach"
nbd-client 127.0.0.1 10809 /dev/nbd0 -N '' -C "$queues" -b 4096 >/out/nbd-client.log 2>&1 ||
  fail "nbd-client failed"
wait_for_path /sys/block/nbd0/pid 10
dd if=/dev/urandom of="$zc" bs=1M count=256 oflag=direct 2>/dev/null || fail "prefill failed"

for job in "$@"; do
  rw=${job%%:*} rest=${job#*:}
  bs=${rest%%:*} qd=${rest#*:}
  name=$rw-$bs-qd$qd
  for system in ublkgw-copy ublkgw-zero-copy kernel-nbd; do
    case $system in
      ublkgw-copy) dev=$copy ;;
      ublkgw-zero-copy) dev=$zc ;;
      kernel-nbd) dev=/dev/nbd0 ;;
    esac
    run=$system-$name
    [ "$dev" = /dev/nbd0 ] || ublkgw stats "$dev" --json >/out/stats-$run-before.json
    $perf record -e cpu-clock -F 999 -a -g -o /tmp/perf-$run.data -- \
      $fio --name=profile --filename="$dev" --ioengine=io_uring --direct=1 --rw="$rw" --bs="$bs" \
        --iodepth="$qd" --size=256M --time_based --runtime="$runtime" --norandommap \
        --output-format=json --output=/out/fio-$run.json >/out/perf-record-$run.log 2>&1 ||
      fail "perf record on $run failed: $(tail -5 /out/perf-record-$run.log)"
    [ "$dev" = /dev/nbd0 ] || ublkgw stats "$dev" --json >/out/stats-$run-after.json
    $perf report -i /tmp/perf-$run.data --stdio --no-children --sort comm,dso \
      >/out/perf-$run-by-comm.txt 2>/dev/null
    $perf report -i /tmp/perf-$run.data --stdio --no-children --sort sym -g none \
      --percent-limit 0.7 >/out/perf-$run-by-symbol.txt 2>/dev/null
    # The daemon alone, kernel and libraries included: where its CPU per I/O goes.
    [ "$dev" = /dev/nbd0 ] ||
      $perf report -i /tmp/perf-$run.data --stdio --no-children --sort dso,sym -g none \
        --pid "$(pidof ublkgwd)" --percent-limit 0.2 >/out/perf-$run-daemon.txt 2>/dev/null
    # Every sample's stack, for the flame graph the host draws.
    $perf script -i /tmp/perf-$run.data >/out/perf-$run.script 2>/dev/null ||
      fail "perf script on $run failed"
    rm -f /tmp/perf-$run.data
    log "$run profiled"
  done
done
log "ok"
