#!/bin/sh
# Guest scenario: the NBD server fails under load, and no error reaches the
# application.
#  1. fio (2 queues, random 4k writes with crc32c, each run read back and
#     verified, back to back)
#     while nbdkit (file plugin: data outlives it) is SIGKILLed and
#     restarted 5 times, each kill after more progress: the volume reports
#     reconnecting, then ok; fio ends with no error and 0 verify errors;
#     every queue reconnected each time.
#  2. a stalled server (SIGSTOP): after the I/O timeout the connection is
#     dropped and made again once it runs (SIGCONT); no error.
#  3. the reconnect deadline (the volume's own, set at attach): with the
#     server gone, reads fail with EIO
#     after it (not before), the volume says disconnected; the server comes
#     back and I/O works again; detach works with the server gone.
# Usage: reconnect.sh PATH   (the data path auto must choose: copy|zero-copy|fused;
#                            +batch: with ublkgwd --batch-io)
. /lib/ublkgw/guest-lib.sh
expect=${1:?data path}

load_module ublk_drv
wait_for_path /dev/ublk-control 10
truncate -s 256M /tmp/disk.img
server=
start_server() {
  nbdkit -f -i 127.0.0.1 -p 10809 file /tmp/disk.img >>/out/nbdkit.log 2>&1 &
  server=$!
  wait_for_listen 10809 20
}
stop_server() {
  kill -KILL "$server"
  wait "$server" 2>/dev/null
  server=
}
start_daemon() {
  ublkgwd --state-dir '' $(path_daemon_args "$expect") "$@" >>/out/ublkgwd.log 2>&1 &
  daemon=$!
  wait_for_path /run/ublkgw/ublkgw.sock 20
}
stop_daemon() {
  kill -TERM $daemon
  wait $daemon || fail "ublkgwd exited $?"
  rm -f /run/ublkgw/ublkgw.sock
}
start_server
start_daemon --io-timeout 3 --reconnect-deadline 60
dev=$(ublkgw attach nbd://127.0.0.1:10809/ --queues 2 --depth 64) || fail "attach failed"
ublkgw list --json >/out/list-attached.json
check_data_path /out/list-attached.json "$expect"
grep -q '"queues": 2' /out/list-attached.json || fail "not 2 queues: $(cat /out/list-attached.json)"

# 1. The server killed and restarted 5 times under fio.
start_load kills --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k \
  --iodepth=32 --numjobs=2 --offset_increment=128M --size=32M --eta=never \
  --verify=crc32c --do_verify=1 --verify_fatal=1 --group_reporting
fault_cycles 5 stop_server start_server "$load_pid"
stop_load kills
n=$(reconnects "$dev")
[ "$n" -ge 10 ] || fail "$n reconnects after 5 kills of both queues' server, want 10 or more"
grep -q 'reconnected after' /out/ublkgwd.log || fail "the log does not tell of reconnecting"
log "5 server kills under fio: 0 errors, data verified, $n reconnects"

# 2. A stalled server: the I/O timeout (3 s) drops the connection.
before=$(reconnects "$dev")
kill -STOP "$server"
dd if="$dev" of=/dev/null bs=4k count=1 skip=12345 iflag=direct 2>/out/dd-stall.err &
reader=$!
wait_for_health HEALTH_RECONNECTING 20
grep -q 'within 3s (the I/O timeout)' /out/ublkgwd.log || fail "no I/O timeout in the log"
kill -CONT "$server"
wait $reader || fail "the read across the stall failed: $(cat /out/dd-stall.err)"
wait_for_health HEALTH_OK 30
[ "$(reconnects "$dev")" -gt "$before" ] || fail "no reconnect after the stall"
[ "$(volume_field failed_requests)" = 0 ] || fail "requests failed: $(cat /tmp/list.json)"
log "stalled server: connection dropped after the I/O timeout and made again, no error"

ublkgw detach "$dev" || fail "detach failed"

# 3. The reconnect deadline, this volume's own (3 s), with the server gone.
dev=$(ublkgw attach nbd://127.0.0.1:10809/ --queues 2 --depth 64 --reconnect-deadline 3) ||
  fail "attach failed"
ublkgw stats "$dev" >/out/stats-deadline.txt || fail "ublkgw stats failed"
grep -q 'io timeout 3s, reconnect deadline 3s' /out/stats-deadline.txt ||
  fail "the volume's deadline is not in force: $(cat /out/stats-deadline.txt)"
stop_server
started=$(date +%s)
dd if="$dev" of=/dev/null bs=4k count=1 skip=777 iflag=direct 2>/out/dd-deadline.err &&
  fail "a read succeeded with no server"
took=$(( $(date +%s) - started ))
grep -qi 'input/output error' /out/dd-deadline.err || fail "not EIO: $(cat /out/dd-deadline.err)"
[ "$took" -ge 2 ] || fail "the read failed after $took s, before the 3 s deadline"
[ "$took" -le 15 ] || fail "the read failed only after $took s (deadline 3 s)"
wait_for_health HEALTH_DISCONNECTED 10
log "past the deadline: EIO after $took s, volume disconnected"
start_server
wait_for_health HEALTH_OK 30
dd if="$dev" of=/dev/null bs=4k count=1 skip=777 iflag=direct 2>/dev/null ||
  fail "I/O does not work once the server is back"
log "the server back: the volume serves again"
stop_server
ublkgw detach "$dev" || fail "detach with the server gone failed"
[ ! -e "$dev" ] || fail "$dev still exists"
stop_daemon
log "ok"
