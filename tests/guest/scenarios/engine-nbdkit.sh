#!/bin/sh
# Guest scenario: the engine's copy data path against nbdkit in the guest.
# Raw data written with O_DIRECT reads back; an ext4 filesystem made on the
# device keeps its files' checksums across detach and re-attach.
# Args: QUEUES DEPTH
. /lib/ublkgw/guest-lib.sh
queues=${1:-1}
depth=${2:-64}

load_module ublk_drv
wait_for_path /dev/ublk-control 10
nbdkit -f -i 127.0.0.1 -p 10809 memory 256M >/out/nbdkit.log 2>&1 &
nbdkit=$!
wait_for_listen 10809 20

attach() {
  engine_attach nbd://127.0.0.1:10809/ "$queues" "$depth" >/out/attach.$1.log 2>&1 &
  attach_pid=$!
  deadline=$(( $(date +%s) + 30 ))
  until grep -q '^ready ' /out/attach.$1.log; do
    kill -0 $attach_pid 2>/dev/null || { cat /out/attach.$1.log; fail "engine_attach exited early"; }
    [ "$(date +%s)" -lt "$deadline" ] || fail "no device within 30 s"
    usleep 50000
  done
  dev=$(sed -n 's/^ready \([^ ]*\).*/\1/p' /out/attach.$1.log)
  log "attached as $dev ($(sed -n 's/^ready [^ ]* //p' /out/attach.$1.log))"
}
detach() {
  kill -TERM $attach_pid
  wait $attach_pid || { cat /out/attach.$1.log; fail "detach failed"; }
  [ ! -e "$dev" ] || fail "$dev still exists after detach"
}

attach 1
[ "$(blockdev --getsize64 "$dev")" -eq $((256 << 20)) ] || fail "wrong size"
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
detach 1
log "files written, device detached"

attach 2
mount -t ext4 "$dev" /mnt/vol || fail "mount after re-attach failed"
(cd /mnt/vol && sha256sum -c /out/sums) || fail "checksums differ after re-attach"
umount /mnt/vol
detach 2
kill $nbdkit
log "ok: files survived detach and re-attach"
