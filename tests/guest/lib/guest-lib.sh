# Helpers for guest scenarios (busybox ash). Source it:
#   . /lib/ublkgw/guest-lib.sh
# Host tools packed with --tool live in /usr/local/bin. Debian's static
# busybox shell runs its own applet of the same name whatever PATH says, so
# call a tool that busybox also provides (dd, blkdiscard, ...) by its full
# path when the busybox one lacks what you need.
# A scenario exits 0 on success, 77 to skip (with the reason), else fails.
# Files it leaves in /out come back to the host (run-guest.sh --out).

log() { echo "[$(cut -d' ' -f1 /proc/uptime)s] $*"; }
# uptime_ms: milliseconds since boot, to time a step (date has no %N here).
uptime_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

# load_module NAME: insmod NAME and its dependencies (packed with --module).
load_module() {
  local mod=$1 line dep
  [ -d "/sys/module/$mod" ] && return 0
  line=$(grep "^$mod\( \|$\)" /lib/ublkgw/modules.deps) ||
    fail "module $mod was not packed (run-guest.sh --module $mod)"
  for dep in ${line#$mod}; do load_module "$dep"; done
  insmod "/lib/modules/$mod.ko" || fail "insmod $mod failed"
}

# wait_for_path PATH SECONDS: waits until PATH exists, or fails.
wait_for_path() {
  local path=$1 deadline=$(( $(date +%s) + $2 ))
  while [ ! -e "$path" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$path did not appear within $2 s"
    usleep 20000
  done
}

# wait_for_listen PORT SECONDS: waits until something listens on TCP PORT
# (IPv4 or IPv6), or fails.
wait_for_listen() {
  local hex deadline=$(( $(date +%s) + $2 ))
  hex=$(printf ':%04X ' "$1")
  until grep -q "$hex[0-9A-F:]* 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "nothing listens on port $1 after $2 s"
    usleep 20000
  done
}

# serve CMD...: runs an NBD server in the background and starts it again
# whenever it exits by itself: nbdkit 1.32 can abort ("raw_send_socket:
# Assertion `sock >= 0' failed") when connections die under it while it
# replies, a fault of the server's, not of the client under test. $server
# is the keeper's pid; unserve stops it and the server. Each restart is a
# line in /out/server-restarts (server_restarts counts them).
serve() {
  (
    # $! is the server from the moment it starts (a TERM between its
    # start and an assignment would miss it); wait then reaps it.
    trap 'kill -KILL $! 2>/dev/null; wait; exit 0' TERM
    while :; do
      "$@" &
      wait $!
      echo "$(cut -d' ' -f1 /proc/uptime)s: the server exited $?; starting it again" \
        >>/out/server-restarts
      usleep 200000
    done
  ) &
  server=$!
}
unserve() {
  kill -TERM $server
  wait $server 2>/dev/null
  server=
}
server_restarts() { cat /out/server-restarts 2>/dev/null | wc -l; }

# expect_exit CODE CMD...: runs CMD (output to the console) and fails unless
# it exits CODE.
expect_exit() {
  local want=$1 rc
  shift
  "$@"
  rc=$?
  [ "$rc" -eq "$want" ] || fail "'$*' exited $rc, want $want"
}

# json_string FILE KEY: the string value of the first "KEY": "value" in FILE.
json_string() {
  sed -n "s/.*\"$2\": \"\([^\"]*\)\".*/\1/p" "$1" | head -n1
}

# check_data_path LIST_JSON PATH: the (first) volume in LIST_JSON, the
# output of `ublkgw list --json`, uses data path PATH (copy, zero-copy or
# fused), with batched ublk commands if PATH ends in +batch and without
# them otherwise.
check_data_path() {
  local want got detail
  detail=$(json_string "$1" data_path_detail)
  case "$2" in
    *+batch)
      echo "$detail" | grep -q 'UBLK_F_BATCH_IO' || fail "no batched ublk commands: $detail" ;;
    *)
      echo "$detail" | grep -q 'UBLK_F_BATCH_IO' && fail "batched ublk commands: $detail" ;;
  esac
  case "${2%+batch}" in
    copy) want=DATA_PATH_COPY ;;
    zero-copy) want=DATA_PATH_ZERO_COPY ;;
    fused) want=DATA_PATH_FUSED ;;
    *) fail "check_data_path: unknown path '$2'" ;;
  esac
  got=$(json_string "$1" data_path)
  [ "$got" = "$want" ] || fail "data path is $got, want $want ($detail)"
}

# path_daemon_args PATH: what ublkgwd needs to give new devices PATH
# (check_data_path): --batch-io for a +batch one.
path_daemon_args() {
  case "$1" in
    *+batch) echo --batch-io ;;
  esac
}

# volume_field KEY: KEY of the (only) volume, from ublkgw list --json.
volume_field() {
  ublkgw list --json >/tmp/list.json || fail "ublkgw list failed"
  json_string /tmp/list.json "$1"
}
# wait_for_health HEALTH SECONDS (HEALTH_OK, HEALTH_RECONNECTING, ...)
wait_for_health() {
  local deadline=$(( $(date +%s) + $2 ))
  until [ "$(volume_field health)" = "$1" ]; do
    [ "$(date +%s)" -lt "$deadline" ] ||
      fail "health is $(volume_field health), not $1, after $2 s: $(volume_field health_detail)"
    usleep 50000
  done
}
# wait_for_progress N SECONDS PID: until the volume has completed N more
# requests; fails if process PID (the load) ends first.
wait_for_progress() {
  local target=$(( $(volume_field completed_requests) + $1 ))
  local deadline=$(( $(date +%s) + $2 ))
  while [ "$(volume_field completed_requests)" -lt "$target" ]; do
    kill -0 "$3" 2>/dev/null || fail "the load ended before $target requests completed"
    [ "$(date +%s)" -lt "$deadline" ] || fail "no progress to $target requests in $2 s"
    usleep 100000
  done
}
# reconnects DEV: the volume's reconnect count.
reconnects() {
  ublkgw stats "$1" --json >/tmp/stats.json || fail "ublkgw stats failed"
  local n
  n=$(sed -n 's/.*"reconnects": "\([0-9]*\)".*/\1/p' /tmp/stats.json | head -n1)
  echo "${n:-0}"  # proto JSON leaves zeros out
}

# wait_for_daemon PID LOG: until the ublkgwd PID answers on the default
# socket (a killed daemon's socket file stays, so its existence says
# nothing); fails with LOG's tail if the daemon exits.
wait_for_daemon() {
  local deadline=$(( $(date +%s) + 20 ))
  until ublkgw list >/dev/null 2>&1; do
    kill -0 "$1" 2>/dev/null || fail "ublkgwd exited: $(tail -5 "$2")"
    [ "$(date +%s)" -lt "$deadline" ] || fail "ublkgwd does not answer after 20 s"
    usleep 50000
  done
}

# server_netns: a network namespace "srv" behind a veth pair, for a server
# at 10.77.0.2 reached from 10.77.0.1 (gw0, which tests take down and up).
# Loads veth and sch_netem; sets srv_netns to the namespace's file, for
# 'nsenter --net' (which, unlike 'ip netns exec', keeps the mount table:
# a server started after a mount must not hold the filesystem).
server_netns() {
  local ip=/usr/local/bin/ip
  load_module veth
  load_module sch_netem
  $ip link set lo up
  $ip netns add srv || fail "ip netns add failed"
  $ip link add gw0 type veth peer name srv0 || fail "no veth pair"
  $ip link set srv0 netns srv
  $ip addr add 10.77.0.1/24 dev gw0
  $ip link set gw0 up
  $ip netns exec srv $ip link set lo up
  $ip netns exec srv $ip addr add 10.77.0.2/24 dev srv0
  $ip netns exec srv $ip link set srv0 up
  srv_netns=/run/netns/srv
  [ -e $srv_netns ] || srv_netns=/var/run/netns/srv
}

# start_load NAME FIO_ARGS...: fio (/usr/local/bin/fio) runs back to back,
# each run verifying what it wrote, until stop_load; so the load outlasts
# any number of faults. Sets load_pid; each run's output is
# /out/fio-NAME-N.txt.
start_load() {
  local name=$1
  shift
  rm -f /tmp/stop-load "/out/$name-failed"
  (
    n=0
    while [ $n -eq 0 ] || [ ! -e /tmp/stop-load ]; do
      n=$((n + 1))
      /usr/local/bin/fio --name="$name" "$@" --output="/out/fio-$name-$n.txt" &&
        grep -q 'err= 0' "/out/fio-$name-$n.txt" || echo "$n" >>"/out/$name-failed"
    done
    echo "$n" >"/out/$name-runs"
  ) &
  load_pid=$!
}
# stop_load NAME: lets the current run finish; every run passed (0 errors,
# data verified) and the volume failed no request.
stop_load() {
  touch /tmp/stop-load
  wait $load_pid
  if [ -s "/out/$1-failed" ]; then
    cat "/out/fio-$1-$(head -n1 "/out/$1-failed").txt"
    fail "fio run(s) $(tr '\n' ' ' <"/out/$1-failed")of $1 failed"
  fi
  [ "$(volume_field failed_requests)" = 0 ] || fail "requests failed: $(cat /tmp/list.json)"
  log "$1: $(cat "/out/$1-runs") fio run(s), 0 errors, data verified"
}

# How much a volume under load must complete between two faults: enough
# that each fault meets requests in flight on both queues (a QD32 load
# keeps 32 there) and that the volume is seen to work again after the last.
progress_step=500

# fault_cycles N BREAK HEAL PID: N times, once the volume has made progress
# ($progress_step requests) under the load PID (start_load's): runs the command
# BREAK, waits until the volume says reconnecting, runs HEAL, waits until
# it is ok again.
fault_cycles() {
  local i=0
  while [ $i -lt "$1" ]; do
    i=$((i + 1))
    wait_for_progress $progress_step 120 "$4"
    $2
    wait_for_health HEALTH_RECONNECTING 20
    $3
    wait_for_health HEALTH_OK 30
    log "$2 $i: the volume reconnected"
  done
}

# kernel_reports_start: on a kernel with kmemleak (kernel/build.sh --debug),
# sets aside what it already suspects (boot's, not ours), so that
# kernel_reports_check sees only what this scenario left. Elsewhere a no-op.
kmemleak=/sys/kernel/debug/kmemleak
kernel_reports_start() {
  [ -d /sys/kernel/debug ] && mount -t debugfs none /sys/kernel/debug 2>/dev/null
  [ -e $kmemleak ] || return 0
  echo scan >$kmemleak
  echo clear >$kmemleak
  log "kmemleak: on; what boot left behind is set aside"
}

# kernel_reports_check: fails if the kernel logged a sanitizer report (UBSAN,
# KASAN), a warning or an oops, or, with kmemleak, if anything io_uring or
# ublk allocated is left unreferenced. Call it once the scenario's users of
# io_uring and ublk are gone.
kernel_reports_check() {
  local gone leaks
  if [ -e $kmemleak ]; then
    # kmemleak reports only objects unreferenced for 5 s or more (its
    # minimum age, a kernel constant): scan once this moment is that old,
    # twice, as its documentation advises.
    gone=$(cut -d. -f1 /proc/uptime)
    until [ $(( $(cut -d. -f1 /proc/uptime) - gone )) -ge 6 ]; do usleep 200000; done
    echo scan >$kmemleak
    echo scan >$kmemleak
    cat $kmemleak >/out/kmemleak.txt
    leaks=$(grep -c '^unreferenced object' /out/kmemleak.txt)
    if grep -qE 'io_uring|io_fused|ublk' /out/kmemleak.txt; then
      cat /out/kmemleak.txt
      fail "kmemleak: io_uring or ublk left objects unreferenced (above; /out/kmemleak.txt)"
    fi
    log "kmemleak: nothing of io_uring's or ublk's leaked ($leaks other suspect(s) in /out/kmemleak.txt)"
  fi
  dmesg >/out/dmesg.txt
  if grep -E 'UBSAN|KASAN|WARNING:|BUG:|Oops' /out/dmesg.txt; then
    fail "the kernel logged a report (above; /out/dmesg.txt)"
  fi
  log "no sanitizer report, warning or oops in the kernel log"
}
