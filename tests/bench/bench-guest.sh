#!/bin/sh
# Guest half of the benchmark (run by tests/bench/run-bench.sh through
# tests/guest/run-guest.sh). For each NBD server, attaches the same export
# three ways - ublkgw copy, ublkgw zero copy, the kernel's nbd client - with
# the same number of connections, and runs every fio job on each in turn
# (A B C A B C ...), ROUNDS times. Each run leaves fio's JSON in /out/fio/
# and a line in /out/runs.tsv with the CPU time it cost:
#   run server system job round guest_busy_ticks daemon_ticks server_ticks hz
# Usage: bench-guest.sh RUNTIME ROUNDS QUEUES SERVERS JOBS
#   SERVERS  comma-separated: memory, null
#   JOBS     comma-separated NAME:RW:BS:QD, e.g. randread-4k-qd32:randread:4k:32
. /lib/ublkgw/guest-lib.sh
runtime=$1 rounds=$2 queues=$3 servers=$4 jobs=$5
fio=/usr/local/bin/fio
size_mb=256

load_module ublk_drv
load_module nbd
wait_for_path /dev/ublk-control 10
wait_for_path /dev/nbd0 10
mkdir -p /out/fio
printf 'run\tserver\tsystem\tjob\tround\tguest_busy_ticks\tdaemon_ticks\tserver_ticks\thz\n' \
  >/out/runs.tsv
hz=100  # USER_HZ: /proc/stat and /proc/PID/stat count in 1/100 s on Linux

ublkgwd --state-dir '' >/out/ublkgwd.log 2>&1 &
daemon=$!
wait_for_path /run/ublkgw/ublkgw.sock 20

# busy_ticks: every CPU's non-idle time since boot (/proc/stat).
busy_ticks() {
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}
# proc_ticks PID: the process's user + system time, all threads.
proc_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

run=0
for server in $(echo "$servers" | tr ',' ' '); do
  case "$server" in
    memory) nbdkit -f -i 127.0.0.1 -p 10809 memory 1G >/out/nbdkit-$server.log 2>&1 & ;;
    null) nbdkit -f -i 127.0.0.1 -p 10809 null 1G >/out/nbdkit-$server.log 2>&1 & ;;
    *) fail "unknown server $server" ;;
  esac
  server_pid=$!
  wait_for_listen 10809 20
  deadline=$(( $(date +%s) + 30 ))
  until ublkgw info nbd://127.0.0.1:10809/ --timeout 10 >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "nbdkit ($server) does not answer"
    usleep 100000
  done

  copy=$(ublkgw attach nbd://127.0.0.1:10809/ --queues "$queues" --depth 128 --data-path copy) ||
    fail "attach (copy) failed"
  zc=$(ublkgw attach nbd://127.0.0.1:10809/ --queues "$queues" --depth 128 --data-path zero-copy) ||
    fail "attach (zero copy) failed"
  nbd-client 127.0.0.1 10809 /dev/nbd0 -N '' -C "$queues" -b 4096 >/out/nbd-client.log 2>&1 ||
    fail "nbd-client failed: $(cat /out/nbd-client.log)"
  wait_for_path /sys/block/nbd0/pid 10
  ublkgw list >/out/list-$server.txt
  cat /out/list-$server.txt
  log "$server: copy $copy, zero copy $zc, kernel nbd /dev/nbd0 ($queues connections each)"
  # Written once, so reads find data (a memory export reads holes faster).
  if [ "$server" = memory ]; then
    dd if=/dev/urandom of="$zc" bs=1M count=$size_mb oflag=direct 2>/dev/null ||
      fail "prefill failed"
  fi

  for spec in $(echo "$jobs" | tr ',' ' '); do
    IFS=: read -r job rw bs qd <<EOF
$spec
EOF
    round=1
    while [ $round -le "$rounds" ]; do
      for system in ublkgw-copy ublkgw-zero-copy kernel-nbd; do
        case $system in
          ublkgw-copy) dev=$copy ;;
          ublkgw-zero-copy) dev=$zc ;;
          kernel-nbd) dev=/dev/nbd0 ;;
        esac
        run=$((run + 1))
        b0=$(busy_ticks) d0=$(proc_ticks $daemon) s0=$(proc_ticks $server_pid)
        $fio --name="$job" --filename="$dev" --ioengine=io_uring --direct=1 --rw="$rw" \
          --bs="$bs" --iodepth="$qd" --size=${size_mb}M --time_based --runtime="$runtime" \
          --norandommap --randrepeat=0 --output-format=json \
          --output=/out/fio/$run.json >/dev/null 2>/out/fio/$run.err ||
          fail "fio $job on $system failed: $(cat /out/fio/$run.err)"
        b1=$(busy_ticks) d1=$(proc_ticks $daemon) s1=$(proc_ticks $server_pid)
        if [ $system = kernel-nbd ]; then d1=$d0; fi  # no daemon: the kernel does it all
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $run "$server" $system "$job" $round \
          $((b1 - b0)) $((d1 - d0)) $((s1 - s0)) $hz >>/out/runs.tsv
        log "run $run: $server $job round $round on $system done"
      done
      round=$((round + 1))
    done
  done

  nbd-client -d /dev/nbd0 >/dev/null 2>&1 || fail "nbd-client -d failed"
  ublkgw detach "$copy" || fail "detach failed"
  ublkgw detach "$zc" || fail "detach failed"
  kill $server_pid
  wait $server_pid
done

kill -TERM $daemon
wait $daemon || fail "ublkgwd exited $?"
uname -r >/out/kernel.txt
log "ok"
