#!/bin/sh
# Guest scenario: broken or hostile NBD servers (tools/hostile_nbd_server.cc)
# cost connections, never data. For each fault (wrong magic, unknown or
# duplicate cookie, oversized chunk, a reply cut off with the connection
# closed, a stalled reply), committed on 3 reads: data written is read back
# intact over 2 queues, no request fails, the daemon logs each fault and
# reconnects. Then a server that faults on every read: the read fails with
# EIO after 5 attempts, logged; the daemon stays up and detach works.
# Usage: hostile.sh [PATH]   (the data path auto must choose, if given:
# copy|zero-copy|fused)
. /lib/ublkgw/guest-lib.sh
expect=${1:-}

load_module ublk_drv
wait_for_path /dev/ublk-control 10
ublkgwd --state-dir '' --io-timeout 2 --reconnect-deadline 60 >/out/ublkgwd.log 2>&1 &
daemon=$!
wait_for_path /run/ublkgw/ublkgw.sock 20
dd if=/dev/urandom of=/tmp/pattern bs=1M count=4 2>/dev/null

port=10900
start_server() {  # FAULT EVERY TIMES
  port=$((port + 1))
  hostile_nbd_server $port 64 "$@" 2>/out/hostile-$1.log &
  server=$!
  wait_for_listen $port 20
}

for fault in wrong-magic unknown-cookie duplicate-cookie oversized-chunk truncated stall; do
  start_server $fault 100 3
  before=$(grep -c "dropping the NBD connection" /out/ublkgwd.log)
  dev=$(ublkgw attach nbd://127.0.0.1:$port/ --queues 2 --depth 16) || fail "attach ($fault) failed"
  dd if=/tmp/pattern of="$dev" bs=64k oflag=direct 2>/dev/null || fail "writes failed ($fault)"
  dd if="$dev" of=/tmp/back bs=4k count=1024 iflag=direct 2>/out/dd-$fault.err ||
    fail "reads failed with the server's $fault: $(cat /out/dd-$fault.err)"
  cmp /tmp/pattern /tmp/back || fail "data read back differs with the server's $fault"
  n=$(grep -c "^hostile: $fault on" /out/hostile-$fault.log)
  [ "$n" -eq 3 ] || fail "the server committed $n faults ($fault), want 3"
  ublkgw list --json >/out/list-$fault.json
  [ -z "$expect" ] || check_data_path /out/list-$fault.json "$expect"
  grep -q '"failed_requests": "0"' /out/list-$fault.json ||
    fail "requests failed: $(cat /out/list-$fault.json)"
  drops=$(( $(grep -c "dropping the NBD connection" /out/ublkgwd.log) - before ))
  [ "$drops" -ge 3 ] || fail "$drops connections dropped with the server's $fault, want 3 or more"
  ublkgw detach "$dev" || fail "detach ($fault) failed"
  kill $server
  wait $server 2>/dev/null
  log "$fault: 3 faults, 3 connections dropped and made again, data intact"
done

# A server that faults on every read once the device is up (SIGUSR1): each
# read is sent 5 times, then fails.
start_server wrong-magic 1000000 0
dev=$(ublkgw attach nbd://127.0.0.1:$port/ --depth 4) || fail "attach failed"
kill -USR1 $server
dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct 2>/out/dd-always.err &&
  fail "a read succeeded although every reply is broken"
grep -qi 'input/output error' /out/dd-always.err || fail "not EIO: $(cat /out/dd-always.err)"
grep -q 'with EIO: sent 5 times' /out/ublkgwd.log || fail "no log line for the failed request"
ublkgw list >/dev/null || fail "the daemon no longer answers"
ublkgw detach "$dev" || fail "detach failed"
log "always faulty: the read failed with EIO after 5 attempts; daemon up, detach ok"
kill $server
kill -TERM $daemon
wait $daemon || fail "ublkgwd exited $?"
log "ok"
