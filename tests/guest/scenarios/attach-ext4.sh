#!/bin/sh
# Guest scenario: the product's main job against a real NBD server in the
# guest (nbdkit, qemu-nbd or nbd-server, exporting 256 MiB as "disk").
# ublkgwd serves; 'ublkgw attach' gives /dev/ublkbN; raw data reads back; an
# ext4 filesystem keeps its files' checksums across detach and re-attach;
# bad requests get clear errors and leave no device behind; SIGTERM to the
# daemon leaves no device either.
# Args: SERVER QUEUES DEPTH EXPECT (the data path auto must choose: copy or
# zero-copy)
. /lib/ublkgw/guest-lib.sh
server=${1:-nbdkit}
queues=${2:-1}
depth=${3:-64}
expect=${4:?the data path auto should choose here}
sock=/run/ublkgw/ublkgw.sock

load_module ublk_drv
wait_for_path /dev/ublk-control 10
case "$server" in
  nbdkit)
    nbdkit -f -i 127.0.0.1 -p 10809 memory 256M >/out/server.log 2>&1 &
    ;;
  qemu-nbd)
    truncate -s 256M /tmp/disk.img
    qemu-nbd -f raw -x disk -b 127.0.0.1 -p 10809 --persistent --shared=8 --discard=unmap \
      /tmp/disk.img >/out/server.log 2>&1 &
    ;;
  nbd-server)
    truncate -s 256M /tmp/disk.img
    printf '[generic]\n  listenaddr = 127.0.0.1\n  port = 10809\n[disk]\n  exportname = /tmp/disk.img\n  trim = true\n  flush = true\n  fua = true\n' \
      >/tmp/nbd-server.conf
    # It daemonises and forks a process per client.
    nbd-server -C /tmp/nbd-server.conf >/out/server.log 2>&1
    ;;
  nbd-server-defaults)
    # What a new user writes: no trim, flush or fua. nbd-server then offers
    # WRITE_ZEROES but not TRIM.
    truncate -s 256M /tmp/disk.img
    printf '[generic]\n  listenaddr = 127.0.0.1\n  port = 10809\n[disk]\n  exportname = /tmp/disk.img\n' \
      >/tmp/nbd-server.conf
    nbd-server -C /tmp/nbd-server.conf >/out/server.log 2>&1
    ;;
  *) fail "unknown server $server" ;;
esac
wait_for_listen 10809 20
# Listening is not serving yet: wait for a whole handshake.
deadline=$(( $(date +%s) + 60 ))
until ublkgw info nbd://127.0.0.1:10809/disk --timeout 30 >/dev/null 2>&1; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "$server does not answer a handshake after 60 s"
  usleep 200000
done
log "serving with $server"
ublkgwd >/out/ublkgwd.log 2>&1 &
daemon=$!
wait_for_path $sock 20

devices() { ls /dev/ublkb* 2>/dev/null | wc -l; }

dev=$(ublkgw attach nbd://127.0.0.1:10809/disk --queues "$queues" --depth "$depth") ||
  fail "attach failed"
log "attached as $dev"
[ -b "$dev" ] || fail "$dev is not a block device"
[ "$(blockdev --getsize64 "$dev")" -eq $((256 << 20)) ] || fail "wrong size"
ublkgw list | tee /out/list.txt
ublkgw list --json >/out/list.json
grep -q "\"device_path\": \"$dev\"" /out/list.json || fail "list --json does not show $dev"
grep -q "\"queues\": $queues" /out/list.json || fail "list --json does not show $queues queue(s)"
check_data_path /out/list.json "$expect"
if [ "$server" = nbd-server-defaults ]; then
  q=/sys/block/${dev#/dev/}/queue
  [ "$(cat $q/discard_max_bytes)" -eq 0 ] || fail "discard offered, but the export has no TRIM"
  [ "$(cat $q/write_zeroes_max_bytes)" -gt 0 ] || fail "no write-zeroes, but the export offers it"
  log "write-zeroes without discard, as the export offers"
fi

dd if=/dev/urandom of=/tmp/pattern bs=1M count=32 2>/dev/null
dd if=/tmp/pattern of="$dev" bs=1M seek=100 oflag=direct 2>/dev/null || fail "write failed"
dd if="$dev" of=/tmp/back bs=1M skip=100 count=32 iflag=direct 2>/dev/null || fail "read failed"
cmp /tmp/pattern /tmp/back || fail "raw data read back differs"
log "32 MiB raw read back"

mkfs.ext4 -q -F "$dev" || fail "mkfs.ext4 failed"
mkdir -p /mnt/vol
mount -t ext4 "$dev" /mnt/vol || fail "mount failed"
for i in 1 2 3 4 5; do dd if=/dev/urandom of=/mnt/vol/file$i bs=1M count=$((i * 3)) 2>/dev/null; done
(cd /mnt/vol && sha256sum file*) >/out/sums
umount /mnt/vol || fail "umount failed"
ublkgw detach "$dev" || fail "detach failed"
[ ! -e "$dev" ] || fail "$dev still exists after detach"
log "files written, device detached"

dev=$(ublkgw attach nbd://127.0.0.1:10809/disk --queues "$queues" --depth "$depth") ||
  fail "re-attach failed"
mount -t ext4 "$dev" /mnt/vol || fail "mount after re-attach failed"
(cd /mnt/vol && sha256sum -c /out/sums) || fail "checksums differ after re-attach"
umount /mnt/vol
log "files survived detach and re-attach"

# Bad requests: clear errors, nothing half-created.
before=$(devices)
ublkgw attach 'nbd://127.0.0.1:10809' --depth 5000 2>/out/err.depth; rc=$?
[ $rc -eq 2 ] || fail "depth 5000 exited $rc, want 2"
ublkgw attach 'nbdx://127.0.0.1/' 2>/out/err.uri; rc=$?
[ $rc -eq 2 ] || fail "a bad URI exited $rc, want 2"
ublkgw attach nbd://127.0.0.1:10899/ 2>/out/err.unreachable; rc=$?
[ $rc -eq 6 ] || fail "an unreachable server exited $rc, want 6"
grep -q 'Connection refused' /out/err.unreachable || fail "unclear: $(cat /out/err.unreachable)"
[ "$(devices)" -eq "$before" ] || fail "a failed attach left a device behind"
log "bad requests refused, nothing left behind"

# SIGTERM: the daemon detaches everything.
kill -TERM $daemon
wait $daemon || fail "ublkgwd exited $? on SIGTERM"
[ "$(devices)" -eq 0 ] || fail "devices left after the daemon stopped: $(ls /dev/ublkb*)"
log "ok"
