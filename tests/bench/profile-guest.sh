#!/bin/sh
# Guest half of tests/bench/profile.sh: one fio job on each system (ublkgw
# copy, ublkgw zero copy, kernel nbd) against nbdkit memory, under
# `perf record -a` (cpu-clock: a TCG guest has no PMU), and a report per
# system: where the guest's CPU goes, by command and symbol. For ublkgw,
# `ublkgw stats --json` before and after the job too (RECVs and
# io_uring_enter calls per I/O are their difference over the ops').
# Usage: profile-guest.sh RW BS QD RUNTIME QUEUES
. /lib/ublkgw/guest-lib.sh
rw=$1 bs=$2 qd=$3 runtime=$4 queues=$5
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

for system in ublkgw-copy ublkgw-zero-copy kernel-nbd; do
  case $system in
    ublkgw-copy) dev=$copy ;;
    ublkgw-zero-copy) dev=$zc ;;
    kernel-nbd) dev=/dev/nbd0 ;;
  esac
  [ "$dev" = /dev/nbd0 ] || ublkgw stats "$dev" --json >/out/stats-$system-before.json
  $perf record -e cpu-clock -F 999 -a -g -o /tmp/perf-$system.data -- \
    $fio --name=profile --filename="$dev" --ioengine=io_uring --direct=1 --rw="$rw" --bs="$bs" \
      --iodepth="$qd" --size=256M --time_based --runtime="$runtime" --norandommap \
      --output-format=json --output=/out/fio-$system.json >/out/perf-record-$system.log 2>&1 ||
    fail "perf record on $system failed: $(tail -5 /out/perf-record-$system.log)"
  [ "$dev" = /dev/nbd0 ] || ublkgw stats "$dev" --json >/out/stats-$system-after.json
  $perf report -i /tmp/perf-$system.data --stdio --no-children --sort comm,dso \
    >/out/perf-$system-by-comm.txt 2>/dev/null
  $perf report -i /tmp/perf-$system.data --stdio --no-children --sort sym -g none \
    --percent-limit 0.7 >/out/perf-$system-by-symbol.txt 2>/dev/null
  # The daemon alone, kernel and libraries included: where its CPU per I/O goes.
  [ "$dev" = /dev/nbd0 ] ||
    $perf report -i /tmp/perf-$system.data --stdio --no-children --sort dso,sym -g none \
      --pid "$(pidof ublkgwd)" --percent-limit 0.2 >/out/perf-$system-daemon.txt 2>/dev/null
  log "$system profiled"
done
log "ok"
