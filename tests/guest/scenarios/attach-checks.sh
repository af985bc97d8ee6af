#!/bin/sh
# Guest scenario: what a disk must do, checked on an attached export
# (nbdkit with its log filter, so the server side is seen too).
#   - direct I/O at the edges (first and last sector, 512- but not
#     4k-aligned) reads back; I/O past the end is refused;
#   - discard and write-zeroes read back as zeroes;
#   - FLUSH and FUA reach the server (its log);
#   - a 1 MiB direct read or write is one NBD request (the server's log);
#   - a read-only export, or --read-only, gives a read-only device;
#   - an unknown export is NOT_FOUND (exit 7) and leaves nothing behind;
#   - without CAN_MULTI_CONN, --queues 2 gives one queue, and says so;
#   - 8 devices attached at once, each verified.
# Usage: attach-checks.sh EXPECT (the data path auto must choose)
. /lib/ublkgw/guest-lib.sh
expect=${1:?the data path auto should choose here}

load_module ublk_drv
wait_for_path /dev/ublk-control 10
nbdkit -f -i 127.0.0.1 -p 10809 --filter=log --filter=exportname memory 64M \
  logfile=/out/nbdkit-rw.log exportname=disk exportname-strict=true >/out/nbdkit.log 2>&1 &
nbdkit -f -r -i 127.0.0.1 -p 10810 memory 16M >/out/nbdkit-ro.log 2>&1 &
nbdkit -f -i 127.0.0.1 -p 10811 --filter=multi-conn memory 16M multi-conn-mode=disable \
  >/out/nbdkit-single.log 2>&1 &
wait_for_listen 10809 20
wait_for_listen 10810 20
wait_for_listen 10811 20
ublkgwd >/out/ublkgwd.log 2>&1 &
daemon=$!
wait_for_path /run/ublkgw/ublkgw.sock 20
size=$((64 << 20))

dev=$(ublkgw attach nbd://127.0.0.1:10809/disk) || fail "attach failed"
ublkgw list --json >/out/list-attached.json
check_data_path /out/list-attached.json "$expect"
log "attached $dev ($expect data path)"

# --- edges ---------------------------------------------------------------
dd if=/dev/urandom of=/tmp/s1 bs=512 count=1 2>/dev/null
dd if=/dev/urandom of=/tmp/s2 bs=512 count=3 2>/dev/null
dd if=/tmp/s1 of="$dev" bs=512 seek=0 oflag=direct 2>/dev/null || fail "write of the first sector"
dd if=/tmp/s2 of="$dev" bs=512 seek=$(( size / 512 - 3 )) oflag=direct 2>/dev/null ||
  fail "write of the last three sectors (not 4k-aligned)"
dd if="$dev" of=/tmp/r1 bs=512 count=1 iflag=direct 2>/dev/null
dd if="$dev" of=/tmp/r2 bs=512 skip=$(( size / 512 - 3 )) count=3 iflag=direct 2>/dev/null
cmp /tmp/s1 /tmp/r1 || fail "first sector differs"
cmp /tmp/s2 /tmp/r2 || fail "last sectors differ"
if dd if=/tmp/s1 of="$dev" bs=512 seek=$(( size / 512 )) count=1 oflag=direct 2>/out/past-end.err; then
  grep -q "0 records out" /out/past-end.err || fail "a write past the end was accepted"
fi
n=$(dd if="$dev" of=/tmp/r3 bs=512 skip=$(( size / 512 )) count=1 iflag=direct 2>&1 | sed -n 's/^\([0-9]*\)+.*records in/\1/p')
[ "${n:-0}" -eq 0 ] || fail "a read past the end returned data"
log "edges: first and last sectors read back; past the end refused"

# --- discard and write-zeroes ------------------------------------------------
dd if=/dev/urandom of="$dev" bs=1M seek=8 count=8 oflag=direct 2>/dev/null
dd if=/dev/zero of=/tmp/zeroes bs=1M count=4 2>/dev/null
blkdiscard -o $((8 << 20)) -l $((4 << 20)) "$dev" || fail "discard failed"
dd if="$dev" of=/tmp/z1 bs=1M skip=8 count=4 iflag=direct 2>/dev/null
cmp /tmp/zeroes /tmp/z1 || fail "discarded range is not zeroes"
/usr/local/bin/blkdiscard -z -o $((12 << 20)) -l $((4 << 20)) "$dev" || fail "write-zeroes failed"
dd if="$dev" of=/tmp/z2 bs=1M skip=12 count=4 iflag=direct 2>/dev/null
cmp /tmp/zeroes /tmp/z2 || fail "zeroed range is not zeroes"
grep -q ' Trim ' /out/nbdkit-rw.log || fail "no TRIM reached the server"
grep -q ' Zero ' /out/nbdkit-rw.log || fail "no WRITE_ZEROES reached the server"
log "discard and write-zeroes read back as zeroes; the server saw TRIM and ZERO"

# --- 1 MiB requests ----------------------------------------------------------
kb=$(cat "/sys/block/${dev#/dev/}/queue/max_sectors_kb")
[ "$kb" -ge 1024 ] || fail "max_sectors_kb is $kb: a 1 MiB request would be split"
dd if=/dev/urandom of=/tmp/m bs=1M count=4 2>/dev/null
dd if=/tmp/m of="$dev" bs=1M seek=40 oflag=direct 2>/dev/null || fail "1 MiB writes failed"
dd if="$dev" of=/tmp/mb bs=1M skip=40 count=4 iflag=direct 2>/dev/null || fail "1 MiB reads failed"
cmp /tmp/m /tmp/mb || fail "1 MiB reads differ from the writes"
for i in 40 41 42 43; do
  for op in Read Write; do
    n=$(grep -c " $op id=[0-9]* offset=$(printf 0x%x $((i << 20))) count=0x100000 " /out/nbdkit-rw.log)
    [ "$n" -eq 1 ] || fail "the server saw $n ${op}s of 1 MiB at MiB $i (want 1): requests were split"
  done
done
log "1 MiB direct reads and writes: one NBD request each (max_sectors_kb $kb)"

# --- flush and FUA -------------------------------------------------------------
before=$(grep -c ' Flush ' /out/nbdkit-rw.log)
/usr/local/bin/dd if=/dev/urandom of="$dev" bs=4k count=16 conv=fsync 2>/dev/null ||
  fail "fsync write failed"
after=$(grep -c ' Flush ' /out/nbdkit-rw.log)
[ "$after" -gt "$before" ] || fail "fsync sent no FLUSH to the server"
/usr/local/bin/dd if=/dev/urandom of="$dev" bs=4k count=4 seek=100 oflag=direct,dsync 2>/dev/null ||
  fail "dsync write failed"
grep -q ' Write .*fua=1' /out/nbdkit-rw.log || fail "an O_DSYNC direct write sent no FUA write"
log "fsync reached the server as FLUSH; O_DSYNC as FUA writes"
ublkgw detach "$dev" || fail "detach failed"

# --- read-only -------------------------------------------------------------------
dev=$(ublkgw attach nbd://127.0.0.1:10810/) || fail "attach of the read-only export failed"
[ "$(blockdev --getro "$dev")" = 1 ] || fail "a read-only export gave a writable device"
dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct 2>/dev/null && fail "a write to a read-only device succeeded"
ublkgw detach "$dev"
dev=$(ublkgw attach nbd://127.0.0.1:10809/disk --read-only) || fail "attach --read-only failed"
[ "$(blockdev --getro "$dev")" = 1 ] || fail "--read-only gave a writable device"
ublkgw detach "$dev"
log "read-only exports and --read-only give read-only devices"

# --- unknown export ------------------------------------------------------------------
ublkgw attach nbd://127.0.0.1:10809/nope 2>/out/err.unknown; rc=$?
[ $rc -eq 7 ] || fail "an unknown export exited $rc, want 7"
grep -q "no export named 'nope'" /out/err.unknown || fail "unclear: $(cat /out/err.unknown)"
[ -z "$(ls /dev/ublkb* 2>/dev/null)" ] || fail "a failed attach left a device"
log "unknown export: NOT_FOUND, nothing left behind"

# --- no CAN_MULTI_CONN: one queue, said -------------------------------------------
dev=$(ublkgw attach nbd://127.0.0.1:10811/ --queues 2 2>/out/note.txt) || fail "attach failed"
grep -q 'CAN_MULTI_CONN: using 1 queue' /out/note.txt || fail "no note about the queues: $(cat /out/note.txt)"
ublkgw list --json | grep -q '"queues": 1' || fail "not one queue"
ublkgw detach "$dev"
log "without CAN_MULTI_CONN: one queue, and the CLI says why"

# --- 8 devices at once ------------------------------------------------------------------
dd if=/dev/urandom of=/tmp/p bs=1M count=2 2>/dev/null
devs=""
for i in 0 1 2 3 4 5 6 7; do
  d=$(ublkgw attach nbd://127.0.0.1:10809/disk --depth 16) || fail "attach #$i failed"
  devs="$devs $d"
done
[ "$(ls /dev/ublkb* | wc -l)" -eq 8 ] || fail "not 8 devices"
i=0
for d in $devs; do  # each device writes its own region of the shared export
  dd if=/tmp/p of="$d" bs=1M seek=$((20 + 2 * i)) oflag=direct 2>/dev/null || fail "write via $d"
  i=$((i + 1))
done
i=0
for d in $devs; do  # and each reads back what another wrote
  j=$(( (i + 1) % 8 ))
  dd if="$d" of=/tmp/b bs=1M skip=$((20 + 2 * j)) count=2 iflag=direct 2>/dev/null
  cmp /tmp/p /tmp/b || fail "$d read back the wrong data"
  i=$((i + 1))
done
for d in $devs; do ublkgw detach "$d" || fail "detach $d"; done
[ -z "$(ls /dev/ublkb* 2>/dev/null)" ] || fail "devices left after detaching all"
log "8 devices attached at once, each verified, all detached"

kill -TERM $daemon
wait $daemon || fail "ublkgwd exited $?"
log "ok"
