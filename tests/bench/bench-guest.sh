#!/bin/sh
# Guest half of the benchmark (run by tests/bench/run-bench.sh through
# tests/guest/run-guest.sh). For each NBD server, attaches the same export
# three ways - ublkgw copy, ublkgw zero copy, the kernel's nbd client - with
# the same number of connections, and runs every fio job on each in turn
# (A B C A B C ...), ROUNDS times. Each run leaves fio's JSON in /out/fio/
# and a line in /out/runs.tsv with the CPU time it cost:
#   run server system job round guest_busy_ticks daemon_ticks server_ticks hz recvs enters
#   fio_job shared daemon_sys_ticks
# (recvs, enters: the RECVs and io_uring_enter calls the ublkgw volume
# made during the run, from `ublkgw stats`, 0 for kernel nbd; fio_job: the
# system's job in fio/RUN.json; shared: with TOGETHER, which ticks are the
# pair's, not the system's own, "-" when none; daemon_sys_ticks: the part of
# daemon_ticks spent in the kernel)
# Usage: bench-guest.sh RUNTIME ROUNDS QUEUES SERVERS JOBS SEND_VARIANTS [BASELINE [NBD [FUSED [TOGETHER [FIO_CPUS]]]]]
#   SERVERS  comma-separated: memory, null (nbdkit's plugins), qemu-nbd,
#            nbd-server (each exporting a raw file on the guest's tmpfs)
#   JOBS     comma-separated NAME:RW:BS:QD, e.g. randread-4k-qd32:randread:4k:32
#   SEND_VARIANTS  1: write jobs also run on zero copy with SEND only
#            (ublkgw-zc-send) and SEND_ZC only (ublkgw-zc-sendzc), each
#            from a second daemon with its own --send-zc-min-bytes
#   BASELINE 1: every job also runs on base-copy and base-zero-copy, served
#            by ublkgwd-base (another revision's daemon, driven with its own
#            CLI ublkgw-base) on a socket of its own. Each of this tree's
#            volumes and its baseline twin run back to back, in turns that
#            swap every round (new old, then old new: A B B A), so a drift
#            of the machine's speed within a round weighs on both alike
#   NBD      0: leave out the kernel's client (old against new only)
#   FUSED    1: a third volume on the fused path (ublkgw-fused; a kernel
#            carrying kernel/patches), run back to back with zero copy, the
#            pair's order swapping every round
#   TOGETHER 1: the pairs of BASELINE or FUSED run at the same time instead
#            of back to back, as two jobs of one fio process, each on its
#            own volume: both see the same seconds of the machine, so its
#            drift, however fast, cannot favour either
#   FIO_CPUS fio's processes run only on these CPUs (fio --cpus_allowed,
#            e.g. 0); empty: anywhere
#   NETNS    1: each server runs in the network namespace "srv", reached
#            over a veth pair at 10.77.0.2; 0: on loopback
. /lib/ublkgw/guest-lib.sh
runtime=$1 rounds=$2 queues=$3 servers=$4 jobs=$5 send_variants=${6:-0} baseline=${7:-0}
with_nbd=${8:-1} fused=${9:-0} together=${10:-0} fio_cpus=${11:-} netns=${12:-0}
fio=/usr/local/bin/fio
size_mb=256

load_module ublk_drv
load_module nbd
wait_for_path /dev/ublk-control 10
wait_for_path /dev/nbd0 10
host=127.0.0.1 in_srv=
if [ "$netns" = 1 ]; then
  server_netns
  host=10.77.0.2 in_srv="/usr/local/bin/ip netns exec srv"
fi
mkdir -p /out/fio
printf 'run\tserver\tsystem\tjob\tround\tguest_busy_ticks\tdaemon_ticks\tserver_ticks\thz\trecvs\tenters\tfio_job\tshared\tdaemon_sys_ticks\n' \
  >/out/runs.tsv
hz=100  # USER_HZ: /proc/stat and /proc/PID/stat count in 1/100 s on Linux

ublkgwd --state-dir '' >/out/ublkgwd.log 2>&1 &
daemon=$!
wait_for_path /run/ublkgw/ublkgw.sock 20
if [ "$send_variants" = 1 ]; then
  ublkgwd --state-dir '' --socket /run/ublkgw/send.sock --send-zc-min-bytes 4294967295 \
    >/out/ublkgwd-send.log 2>&1 &
  daemon_send=$!
  ublkgwd --state-dir '' --socket /run/ublkgw/sendzc.sock --send-zc-min-bytes 0 \
    >/out/ublkgwd-sendzc.log 2>&1 &
  daemon_sendzc=$!
  wait_for_path /run/ublkgw/send.sock 20
  wait_for_path /run/ublkgw/sendzc.sock 20
fi
if [ "$baseline" = 1 ]; then
  ublkgwd-base --state-dir '' --socket /run/ublkgw/base.sock >/out/ublkgwd-base.log 2>&1 &
  daemon_base=$!
  wait_for_path /run/ublkgw/base.sock 20
fi

# busy_ticks: every CPU's non-idle time since boot (/proc/stat).
busy_ticks() {
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}
# volume_counter DEV SOCKET FIELD: a counter of `ublkgw stats DEV --json`
# (0 when absent: JSON leaves zeroes out).
volume_counter() {
  cli=ublkgw
  [ "$2" = /run/ublkgw/base.sock ] && cli=ublkgw-base
  $cli stats "$1" --socket "$2" --json >/tmp/stats.json 2>/dev/null || { echo 0; return; }
  local v
  v=$(json_string /tmp/stats.json "$3")
  echo "${v:-0}"
}
# proc_ticks PID: the process's user + system time, all threads.
proc_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
# server_ticks: the CPU ticks of every process of the server (nbd-server
# forks one per connection).
server_ticks() {
  local total=0 p
  for p in $(pidof "$server_cmd"); do total=$((total + $(proc_ticks "$p"))); done
  echo $total
}
# proc_sys_ticks PID: the part of that spent in the kernel.
proc_sys_ticks() {
  awk '{ print $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# select_system SYSTEM: sets dev, pid (the process that serves it) and sock.
select_system() {
  sock=/run/ublkgw/ublkgw.sock
  case $1 in
    ublkgw-copy) dev=$copy pid=$daemon ;;
    ublkgw-zero-copy) dev=$zc pid=$daemon ;;
    ublkgw-fused) dev=$fz pid=$daemon ;;
    ublkgw-zc-send) dev=$zc_send pid=$daemon_send sock=/run/ublkgw/send.sock ;;
    ublkgw-zc-sendzc) dev=$zc_sendzc pid=$daemon_sendzc sock=/run/ublkgw/sendzc.sock ;;
    base-copy) dev=$base_copy pid=$daemon_base sock=/run/ublkgw/base.sock ;;
    base-zero-copy) dev=$base_zc pid=$daemon_base sock=/run/ublkgw/base.sock ;;
    kernel-nbd) dev=/dev/nbd0 pid= ;;
    *) fail "unknown system $1" ;;
  esac
}

# counters SYSTEM DEV SOCK PID: prints "daemon_ticks recvs enters
# daemon_sys_ticks" now (all 0 for kernel nbd: no daemon, the kernel does
# it all).
counters() {
  if [ "$1" = kernel-nbd ]; then
    echo 0 0 0 0
  else
    echo "$(proc_ticks "$4") $(volume_counter "$2" "$3" socket_recvs)" \
      "$(volume_counter "$2" "$3" ring_enters) $(proc_sys_ticks "$4")"
  fi
}

# measure ENTRY: one fio run of the current job. ENTRY is a system, or two
# joined by "+" to run at the same time, each as its own job of one fio
# process, so both see the same seconds of the machine. Writes one runs.tsv
# line per system; for a pair, the ticks that cannot be told apart (the
# guest's, the server's, and the daemon's when one serves both) are the
# pair's, and the line's "shared" column names them.
measure() {
  first=${1%%+*} second=
  [ "$first" = "$1" ] || second=${1#*+}
  run=$((run + 1))
  select_system "$first"
  dev1=$dev pid1=$pid sock1=$sock
  names="--name=$first --filename=$dev1"
  shared=-
  if [ -n "$second" ]; then
    select_system "$second"
    dev2=$dev pid2=$pid sock2=$sock
    names="$names --name=$second --filename=$dev2"
    shared=busy,server
    [ "$pid1" = "$pid2" ] && shared=busy,server,daemon
  fi
  set -- $(counters "$first" "$dev1" "$sock1" "$pid1")
  d1a=$1 r1a=$2 e1a=$3 k1a=$4
  if [ -n "$second" ]; then
    set -- $(counters "$second" "$dev2" "$sock2" "$pid2")
    d2a=$1 r2a=$2 e2a=$3 k2a=$4
  fi
  b0=$(busy_ticks) s0=$(server_ticks)
  # $names is a list of options: split on purpose.
  $fio ${fio_cpus:+--cpus_allowed=$fio_cpus} --ioengine=io_uring --direct=1 --rw="$rw" \
    --bs="$bs" --iodepth="$qd" --size=${size_mb}M --time_based --runtime="$runtime" \
    --norandommap --randrepeat=0 --output-format=json \
    --output=/out/fio/$run.json $names >/dev/null 2>/out/fio/$run.err ||
    fail "fio $job on $first${second:+ and $second} failed: $(cat /out/fio/$run.err)"
  b1=$(busy_ticks) s1=$(server_ticks)
  set -- $(counters "$first" "$dev1" "$sock1" "$pid1")
  row "$first" 0 $(($1 - d1a)) $(($2 - r1a)) $(($3 - e1a)) $(($4 - k1a))
  if [ -n "$second" ]; then
    set -- $(counters "$second" "$dev2" "$sock2" "$pid2")
    row "$second" 1 $(($1 - d2a)) $(($2 - r2a)) $(($3 - e2a)) $(($4 - k2a))
  fi
  log "run $run: $server $job round $round on $first${second:+ and $second} done"
}

# pair A B: the two systems of a compared pair, as entries for measure:
# back to back, or one entry with TOGETHER; their order swaps every round.
pair() {
  local sep=' '
  [ "$together" = 1 ] && sep=+
  if [ $((round % 2)) = 1 ]; then echo "$1$sep$2"; else echo "$2$sep$1"; fi
}

# row SYSTEM FIO_JOB DAEMON_TICKS RECVS ENTERS DAEMON_SYS_TICKS: the
# runs.tsv line of one system (FIO_JOB: its index in the run's fio JSON).
row() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $run "$server" "$1" "$job" \
    $round $((b1 - b0)) "$3" $((s1 - s0)) $hz "$4" "$5" "$2" "$shared" "$6" >>/out/runs.tsv
}

run=0
for server in $(echo "$servers" | tr ',' ' '); do
  # Each server exports 1 GiB; nbdkit any name, the others "disk".
  export_name= server_cmd=nbdkit
  case "$server" in
    memory) $in_srv nbdkit -f -i $host -p 10809 memory 1G >/out/server-$server.log 2>&1 & ;;
    null) $in_srv nbdkit -f -i $host -p 10809 null 1G >/out/server-$server.log 2>&1 & ;;
    qemu-nbd)
      export_name=disk server_cmd=qemu-nbd
      rm -f /tmp/disk.img && truncate -s 1G /tmp/disk.img
      $in_srv qemu-nbd -f raw -x disk -b $host -p 10809 --persistent --shared=16 /tmp/disk.img \
        >/out/server-$server.log 2>&1 &
      ;;
    nbd-server)
      export_name=disk server_cmd=nbd-server
      rm -f /tmp/disk.img && truncate -s 1G /tmp/disk.img
      printf "[generic]\n  listenaddr = $host\n  port = 10809\n[disk]\n  exportname = /tmp/disk.img\n  flush = true\n  fua = true\n" \
        >/tmp/nbd-server.conf
      # It daemonises, and forks a process per connection.
      $in_srv nbd-server -C /tmp/nbd-server.conf >/out/server-$server.log 2>&1 ||
        fail "nbd-server failed: $(cat /out/server-$server.log)"
      ;;
    *) fail "unknown server $server (memory, null, qemu-nbd, nbd-server)" ;;
  esac
  uri=nbd://$host:10809/$export_name
  [ "$netns" = 1 ] || wait_for_listen 10809 20
  deadline=$(( $(date +%s) + 30 ))
  until ublkgw info "$uri" --timeout 10 >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$server does not answer a handshake"
    usleep 100000
  done

  copy=$(ublkgw attach "$uri" --queues "$queues" --depth 128 --data-path copy) ||
    fail "attach (copy) failed"
  zc=$(ublkgw attach "$uri" --queues "$queues" --depth 128 --data-path zero-copy) ||
    fail "attach (zero copy) failed"
  systems="ublkgw-copy ublkgw-zero-copy"
  if [ "$fused" = 1 ]; then
    fz=$(ublkgw attach "$uri" --queues "$queues" --depth 128 --data-path fused) ||
      fail "attach (fused) failed"
  fi
  if [ "$send_variants" = 1 ]; then
    zc_send=$(ublkgw attach "$uri" --socket /run/ublkgw/send.sock \
      --queues "$queues" --depth 128 --data-path zero-copy) || fail "attach (SEND) failed"
    zc_sendzc=$(ublkgw attach "$uri" --socket /run/ublkgw/sendzc.sock \
      --queues "$queues" --depth 128 --data-path zero-copy) || fail "attach (SEND_ZC) failed"
  fi
  if [ "$baseline" = 1 ]; then
    base_copy=$(ublkgw-base attach "$uri" --socket /run/ublkgw/base.sock \
      --queues "$queues" --depth 128 --data-path copy) || fail "attach (baseline copy) failed"
    base_zc=$(ublkgw-base attach "$uri" --socket /run/ublkgw/base.sock \
      --queues "$queues" --depth 128 --data-path zero-copy) || fail "attach (baseline zero copy) failed"
  fi
  nbd-client $host 10809 /dev/nbd0 -N "$export_name" -C "$queues" -b 4096 >/out/nbd-client.log 2>&1 ||
    fail "nbd-client failed: $(cat /out/nbd-client.log)"
  wait_for_path /sys/block/nbd0/pid 10
  ublkgw list >/out/list-$server.txt
  cat /out/list-$server.txt
  log "$server: copy $copy, zero copy $zc, kernel nbd /dev/nbd0 ($queues connections each)"
  # Written once, so reads find data (a memory export reads holes faster,
  # a file's are sent as holes).
  if [ "$server" != null ]; then
    dd if=/dev/urandom of="$zc" bs=1M count=$size_mb oflag=direct 2>/dev/null ||
      fail "prefill failed"
  fi

  for spec in $(echo "$jobs" | tr ',' ' '); do
    IFS=: read -r job rw bs qd <<EOF
$spec
EOF
    round=1
    while [ $round -le "$rounds" ]; do
      # Each entry is one fio run; "a+b" runs a and b at the same time.
      if [ "$baseline" = 1 ]; then
        all="$(pair ublkgw-copy base-copy) $(pair ublkgw-zero-copy base-zero-copy)"
      elif [ "$fused" = 1 ]; then
        all="ublkgw-copy $(pair ublkgw-zero-copy ublkgw-fused)"
      else
        all=$systems
      fi
      [ "$with_nbd" = 1 ] && all="$all kernel-nbd"
      case "$rw" in *write*) [ "$send_variants" = 1 ] && all="$all ublkgw-zc-send ublkgw-zc-sendzc" ;; esac
      for entry in $all; do
        measure "$entry"
      done
      round=$((round + 1))
    done
  done

  nbd-client -d /dev/nbd0 >/dev/null 2>&1 || fail "nbd-client -d failed"
  ublkgw detach "$copy" || fail "detach failed"
  ublkgw detach "$zc" || fail "detach failed"
  if [ "$fused" = 1 ]; then ublkgw detach "$fz" || fail "detach failed"; fi
  if [ "$send_variants" = 1 ]; then
    ublkgw detach "$zc_send" --socket /run/ublkgw/send.sock || fail "detach failed"
    ublkgw detach "$zc_sendzc" --socket /run/ublkgw/sendzc.sock || fail "detach failed"
  fi
  if [ "$baseline" = 1 ]; then
    ublkgw-base detach "$base_copy" --socket /run/ublkgw/base.sock || fail "detach failed"
    ublkgw-base detach "$base_zc" --socket /run/ublkgw/base.sock || fail "detach failed"
  fi
  kill $(pidof "$server_cmd") 2>/dev/null
  deadline=$(( $(date +%s) + 20 ))
  while pidof "$server_cmd" >/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$server does not exit"
    usleep 100000
  done
done

kill -TERM $daemon
wait $daemon || fail "ublkgwd exited $?"
if [ "$send_variants" = 1 ]; then
  kill -TERM $daemon_send $daemon_sendzc
  wait $daemon_send $daemon_sendzc
fi
if [ "$baseline" = 1 ]; then
  kill -TERM $daemon_base
  wait $daemon_base
fi
uname -r >/out/kernel.txt
log "ok"
