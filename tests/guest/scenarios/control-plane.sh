#!/bin/sh
# Guest scenario: the control plane against a real device.
#  - statistics (read through the Prometheus endpoint) agree with fio's own
#    op and byte counts within 1%, for reads, writes and discards;
#  - `ublkgw stats --watch --json` streams live rates;
#  - resize: shrink and grow back (kernels with UPDATE_SIZE), growing past
#    what the NBD connections negotiated refused with the way out; a clear
#    refusal (exit 3) on kernels without UPDATE_SIZE;
#  - a daemon stopped (SIGTERM) or killed (SIGKILL) and started again
#    brings the recorded volume back, and its data with it;
#  - a dead server shows as reconnecting, then (past the reconnect
#    deadline) disconnected in list and metrics.
# Usage: control-plane.sh EXPECT (the data path auto must choose)
. /lib/ublkgw/guest-lib.sh
expect=${1:?the data path auto should choose here}
fio=/usr/local/bin/fio

load_module ublk_drv
wait_for_path /dev/ublk-control 10
truncate -s 256M /tmp/export.img
nbdkit -f -i 127.0.0.1 -p 10809 file /tmp/export.img >/out/nbdkit.log 2>&1 &
nbdkit_pid=$!
wait_for_listen 10809 20

start_daemon() {
  ublkgwd --state-dir /var/lib/ublkgw --metrics-listen 127.0.0.1:9477 "$@" >>/out/ublkgwd.log 2>&1 &
  daemon=$!
  wait_for_path /run/ublkgw/ublkgw.sock 20
  wait_for_listen 9477 20
}
start_daemon

# What the kernel answers to the zero-copy path's socket operations.
ublkgw daemon-info >/out/daemon-info.txt || fail "daemon-info failed"
cat /out/daemon-info.txt
case "$(uname -r)" in
  6.12.*) want_recv="RECV into a fixed buffer: Invalid argument" ;;
  *) want_recv="RECV into a fixed buffer: 4096 bytes, data intact" ;;
esac
grep -q "$want_recv" /out/daemon-info.txt || fail "probe: want '$want_recv'"
grep -q "SEND_ZC with a fixed buffer: 4096 bytes, data intact, notified" /out/daemon-info.txt ||
  fail "probe: SEND_ZC with a fixed buffer should work on $(uname -r)"

dev=$(ublkgw attach nbd://127.0.0.1:10809/ --queues 2 --depth 64) || fail "attach failed"
ublkgw list --json >/out/list-attached.json
check_data_path /out/list-attached.json "$expect"
log "attached $dev ($expect data path)"
[ -s /var/lib/ublkgw/state.json ] || fail "the attachment was not recorded"
grep -q '"uri": "nbd://127.0.0.1:10809/"' /var/lib/ublkgw/state.json ||
  fail "the record lacks the URI: $(cat /var/lib/ublkgw/state.json)"

# scrape: fetches the metrics once into /tmp/metrics.txt.
scrape() {
  wget -q -O - http://127.0.0.1:9477/metrics >/tmp/metrics.txt || fail "metrics scrape failed"
}
# metric NAME OP: the value of NAME{...,op="OP"} for our device, from the
# last scrape.
metric() {
  awk -v name="$1" -v op="op=\"$2\"" -v dev="device=\"$dev\"" \
    'index($1, name "{") == 1 && index($1, dev) && index($1, op) { print $2 }' /tmp/metrics.txt
}
# fio_count FILE SECTION KEY: KEY ("total_ios" or "io_bytes") of the
# read/write/trim section of fio's JSON output (group_reporting: one job).
fio_count() {
  awk -v want="\"$2\"" -v key="\"$3\"" '
    /^      "(read|write|trim|sync)" : \{/ { section = $1 }
    section == want && $1 == key { gsub(",", "", $3); print $3; exit }' "$1"
}
# within1 A B: |A - B| <= 1% of B (B > 0).
within1() {
  awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d * 100 <= b) }'
}

# Counters before, a fio run with reads, writes and discards, counters after.
scrape
for op in read write discard; do eval "before_ops_$op=$(metric ublkgw_volume_ops_total $op)"; done
for op in read write discard; do eval "before_bytes_$op=$(metric ublkgw_volume_bytes_total $op)"; done
$fio --name=mix --filename="$dev" --ioengine=io_uring --direct=1 --rw=randrw --rwmixread=60 \
  --bs=4k --iodepth=16 --numjobs=2 --offset_increment=64M --size=16M --eta=never \
  --group_reporting --output-format=json --output=/out/fio-mix.json ||
  fail "fio randrw failed"
$fio --name=trim --filename="$dev" --ioengine=io_uring --direct=1 --rw=randtrim --bs=64k \
  --iodepth=8 --offset=128M --size=16M --eta=never --group_reporting --output-format=json \
  --output=/out/fio-trim.json || fail "fio randtrim failed"
check() {  # check OP FIO_FILE FIO_SECTION
  local ops bytes fio_ops fio_bytes
  ops=$(( $(metric ublkgw_volume_ops_total "$1") - $(eval echo \$before_ops_$1) ))
  bytes=$(( $(metric ublkgw_volume_bytes_total "$1") - $(eval echo \$before_bytes_$1) ))
  fio_ops=$(fio_count "$2" "$3" total_ios)
  fio_bytes=$(fio_count "$2" "$3" io_bytes)
  log "$1: ublkgw counted $ops ops, $bytes bytes; fio $fio_ops ops, $fio_bytes bytes"
  within1 "$ops" "$fio_ops" || fail "$1 ops: ublkgw $ops vs fio $fio_ops (more than 1% apart)"
  within1 "$bytes" "$fio_bytes" || fail "$1 bytes: ublkgw $bytes vs fio $fio_bytes"
}
scrape
check read /out/fio-mix.json read
check write /out/fio-mix.json write
check discard /out/fio-trim.json trim
[ "$(metric ublkgw_volume_errors_total write)" = 0 ] || fail "write errors counted"
cp /tmp/metrics.txt /out/metrics.txt
count=$(awk 'index($1, "ublkgw_volume_latency_seconds_count{") == 1 && index($1, "op=\"write\"") { print $2 }' /tmp/metrics.txt)
inf=$(awk 'index($1, "ublkgw_volume_latency_seconds_bucket{") == 1 && index($1, "op=\"write\"") && index($1, "le=\"+Inf\"") { print $2 }' /tmp/metrics.txt)
[ -n "$count" ] && [ "$count" = "$inf" ] || fail "write latency histogram: count $count, +Inf bucket $inf"
ublkgw stats "$dev" >/out/stats.txt || fail "ublkgw stats failed"
grep -q '^write ' /out/stats.txt || fail "stats table has no write row: $(cat /out/stats.txt)"

# Live rates while fio writes: wait until its writes arrive, then watch.
scrape
start_writes=$(metric ublkgw_volume_ops_total write)
$fio --name=load --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k \
  --iodepth=8 --time_based --runtime=8 --eta=never --output=/dev/null &
fio_pid=$!
deadline=$(( $(date +%s) + 20 ))
while scrape; [ "$(metric ublkgw_volume_ops_total write)" -le "$start_writes" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "fio's writes did not arrive within 20 s"
  usleep 50000
done
ublkgw stats "$dev" --watch --interval 0.5 --count 3 --json >/out/watch.ndjson ||
  fail "stats --watch failed"
wait $fio_pid || fail "fio under watch failed"
[ "$(wc -l </out/watch.ndjson)" -eq 3 ] || fail "stats --watch printed $(wc -l </out/watch.ndjson) lines, want 3"
rates=$(sed -n 's/.*"write":{[^}]*"ops_per_second":\([0-9.e+]*\).*/\1/p' /out/watch.ndjson)
[ "$(echo "$rates" | wc -l)" -eq 3 ] || fail "no write rates in: $(cat /out/watch.ndjson)"
for r in $rates; do
  awk -v r="$r" 'BEGIN { exit !(r > 0) }' || fail "a zero write rate while fio wrote: $rates"
done
log "stats --watch: write rates $(echo $rates)"

# Resize: grow the export on the server, then tell the device.
name=${dev#/dev/}
if ublkgw features --json | sed -n '/"supported"/,/]/p' | grep -q '"UBLK_F_UPDATE_SIZE"'; then
  ublkgw resize "$dev" --size 192M || fail "shrinking to 192M failed"
  [ "$(cat /sys/block/$name/size)" -eq $((192 * 2048)) ] ||
    fail "after the shrink the device has $(cat /sys/block/$name/size) sectors, want $((192 * 2048))"
  out=$(/usr/local/bin/dd if=/dev/zero of="$dev" bs=1M seek=200 count=1 oflag=direct 2>&1) &&
    fail "a write past the shrunk end succeeded"
  ublkgw resize "$dev" || fail "growing back to the export's size failed"
  [ "$(cat /sys/block/$name/size)" -eq $((256 * 2048)) ] || fail "growing back did not take"
  /usr/local/bin/dd if=/dev/zero of="$dev" bs=1M seek=200 count=1 oflag=direct 2>/dev/null ||
    fail "writing in the range grown back failed"
  expect_exit 2 ublkgw resize "$dev" --size 1G
  # The export grows on the server: these connections still see 256 MiB.
  truncate -s 384M /tmp/export.img
  out=$(ublkgw resize "$dev" 2>&1)
  rc=$?
  [ $rc -eq 3 ] || fail "growing past the connections' size exited $rc, want 3: $out"
  echo "$out" | grep -q "detach and attach again" || fail "the refusal gives no way out: $out"
  log "resize: shrunk to 192 MiB, grown back to 256 MiB, past the connections' size refused"
else
  out=$(ublkgw resize "$dev" --size 192M 2>&1)
  rc=$?
  [ $rc -eq 3 ] || fail "resize without UPDATE_SIZE exited $rc, want 3: $out"
  echo "$out" | grep -q UBLK_F_UPDATE_SIZE || fail "resize refusal does not say why: $out"
  log "resize: refused on this kernel with the reason"
fi

# Data that must survive the daemon's restarts.
/usr/local/bin/dd if=/dev/urandom of=/tmp/pattern bs=1M count=4 2>/dev/null
/usr/local/bin/dd if=/tmp/pattern of="$dev" bs=1M seek=8 oflag=direct 2>/dev/null || fail "pattern write failed"
want=$(md5sum </tmp/pattern)
read_back() {  # read_back DEVICE
  /usr/local/bin/dd if="$1" bs=1M skip=8 count=4 iflag=direct 2>/dev/null | md5sum
}
device_of() {  # the device path of our volume, from the daemon
  ublkgw list --json | sed -n 's/.*"device_path": "\(\/dev\/ublkb[0-9]*\)".*/\1/p' | head -n1
}

# 1. SIGTERM: devices go, the record stays; the next daemon brings it back
#    under the same name.
kill -TERM $daemon
wait $daemon || fail "ublkgwd exited $? on SIGTERM"
[ ! -e "$dev" ] || fail "$dev still exists after SIGTERM"
start_daemon
wait_for_path "$dev" 30
[ "$(device_of)" = "$dev" ] || fail "restored as $(device_of), want $dev"
[ "$(read_back "$dev")" = "$want" ] || fail "data differs after a restart"
log "SIGTERM and restart: $dev is back with its data"

# 2. SIGKILL: the dead daemon's device cannot be adopted without user
#    recovery (issue 7); the record brings the volume back, under a free
#    name if the old one is still held by the kernel.
kill -KILL $daemon
wait $daemon
start_daemon
deadline=$(( $(date +%s) + 30 ))
while :; do
  new=$(device_of)
  if [ -n "$new" ] && ublkgw list | grep -q " ok "; then break; fi
  [ "$(date +%s)" -lt "$deadline" ] || fail "no volume restored after SIGKILL: $(ublkgw list)"
  usleep 100000
done
wait_for_path "$new" 10
[ "$(read_back "$new")" = "$want" ] || fail "data differs after SIGKILL and restart"
log "SIGKILL and restart: restored as $new with its data"
[ "$(ublkgw list --json | grep -c '"device_path"')" -eq 1 ] || fail "more than one volume: $(ublkgw list)"

# An explicit detach forgets the record: the next daemon restores nothing.
ublkgw detach "$new" || fail "detach failed"
kill -TERM $daemon
wait $daemon || fail "ublkgwd exited $?"
start_daemon --reconnect-deadline 2
ublkgw list | grep -q "no volumes attached" || fail "a detached volume came back: $(ublkgw list)"

# The server dies: its volume reconnects, and past the reconnect deadline
# (2 s here) its I/O fails; list, stats and metrics say so; a forced
# detach still works.
dev=$(ublkgw attach nbd://127.0.0.1:10809/) || fail "attach failed"
kill -KILL $nbdkit_pid
wait $nbdkit_pid
deadline=$(( $(date +%s) + 10 ))
until ublkgw list >/out/list-reconnecting.txt && grep -q "reconnecting" /out/list-reconnecting.txt; do
  [ "$(date +%s)" -lt "$deadline" ] ||
    fail "list does not say reconnecting: $(cat /out/list-reconnecting.txt)"
  usleep 50000
done
/usr/local/bin/dd if="$dev" of=/dev/null bs=4k count=1 skip=999 iflag=direct 2>/dev/null &&
  fail "a read succeeded although the server is dead"
ublkgw list >/out/list-disconnected.txt
grep -q "disconnected" /out/list-disconnected.txt || fail "list does not say disconnected: $(cat /out/list-disconnected.txt)"
grep -q "queue 0: .*until the server is back" /out/list-disconnected.txt ||
  fail "list does not say what is wrong: $(cat /out/list-disconnected.txt)"
scrape
[ "$(grep -c '^ublkgw_volume_up{.*} 0$' /tmp/metrics.txt)" -eq 1 ] ||
  fail "metrics do not show the volume down"
ublkgw detach "$dev" --force || fail "forced detach of a disconnected volume failed"
log "server killed: list says disconnected ($(sed -n 2,3p /out/list-disconnected.txt | tr -s ' ' | head -c 160)); forced detach ok"
kill -TERM $daemon
wait $daemon || fail "ublkgwd exited $?"
log "ok"
