#!/bin/sh
# Guest scenario: the daemon dies, or is upgraded, under load, and the
# filesystem mounted on its device never notices.
#  1. ext4 on a 2-queue volume, fio with crc32c verify on files in it;
#     ublkgwd SIGKILLed KILLS times (3), each after more progress, and started
#     again: each new daemon takes the device over (the same /dev/ublkbN,
#     never gone, the filesystem mounted throughout).
#  2. an upgrade: SIGTERM with --on-stop keep, a new ublkgwd takes over;
#     the old one first awaits the replies to what it sent (both queues
#     leave with nothing in flight).
#     fio ends with no error and 0 verify errors, the kernel logged no I/O
#     error, and e2fsck finds the filesystem clean.
#  3. a device left waiting is never another daemon's: a second ublkgwd,
#     whose record names the same /dev/ublkbN with another mark, leaves it
#     alone.
#  4. detach removes the device even while it waits for a daemon: the
#     daemon is killed, the server is gone, the new daemon cannot take the
#     device over (it says so), and 'ublkgw detach' removes it; a read
#     waiting on it fails with EIO.
#  5. a device made without user recovery (as on kernels that lack it):
#     attach says why, and --on-stop keep detaches it rather than leave it.
#  On the fused path (a kernel carrying kernel/patches, which also fixes
#  mainline's UBSAN report on zero-copy registration), the kernel must log
#  no sanitizer report, warning or oops, and on a debug kernel (KASAN,
#  kmemleak: kernel/build.sh --debug) the killed daemons' fused commands
#  must leave nothing of io_uring's or ublk's unreferenced.
# Usage: recovery.sh PATH [KILLS [FIO_SIZE]]
#   PATH      the data path auto must choose: copy|zero-copy|fused, with
#             +batch: ublkgwd --batch-io, batched ublk commands
#   KILLS     SIGKILLs under fio (default 3)
#   FIO_SIZE  each fio job's file (default 16M); a debug kernel, 5 times
#             slower, runs 1 kill on 4M files: still fused commands in flight
#             at each SIGKILL, in a third of the time
. /lib/ublkgw/guest-lib.sh
expect=${1:?data path}
kills=${2:-3}
fio_size=${3:-16M}

load_module ublk_drv
wait_for_path /dev/ublk-control 10
[ "$expect" = fused ] && kernel_reports_start
truncate -s 256M /tmp/disk.img
serve nbdkit -f -i 127.0.0.1 -p 10809 file /tmp/disk.img >>/out/nbdkit.log 2>&1
wait_for_listen 10809 20

daemon=
start_daemon() {
  ublkgwd --state-dir /tmp/state --on-stop keep --io-timeout 10 $(path_daemon_args "$expect") \
    "$@" >>/out/ublkgwd.log 2>&1 &
  daemon=$!
  wait_for_daemon $daemon /out/ublkgwd.log
}
# still_there DEV: the device and the filesystem on it never went away.
still_there() {
  [ -b "$1" ] || fail "$1 is gone"
  grep -q "^$1 /mnt/vol " /proc/mounts || fail "/mnt/vol is no longer mounted"
}

start_daemon
dev=$(ublkgw attach nbd://127.0.0.1:10809/ --queues 2 --depth 64) || fail "attach failed"
ublkgw list --json >/out/list-attached.json
check_data_path /out/list-attached.json "$expect"
grep -q '"queues": 2' /out/list-attached.json || fail "not 2 queues: $(cat /out/list-attached.json)"
grep -q 'cannot outlive' /out/list-attached.json &&
  fail "this kernel has user recovery, yet attach says it does not"
mkfs.ext4 -q -F "$dev" || fail "mkfs.ext4 failed"
mkdir -p /mnt/vol
mount -t ext4 "$dev" /mnt/vol || fail "mount failed"

# 1. SIGKILL KILLS times under fio.
start_load crash --directory=/mnt/vol --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k \
  --iodepth=16 --numjobs=2 --size="$fio_size" --eta=never --verify=crc32c --do_verify=1 \
  --verify_fatal=1 --group_reporting
i=0
while [ $i -lt "$kills" ]; do
  i=$((i + 1))
  wait_for_progress $progress_step 120 $load_pid
  kill -KILL $daemon
  wait $daemon 2>/dev/null
  still_there "$dev"
  start_daemon
  wait_for_health HEALTH_OK 30
  still_there "$dev"
  [ "$(volume_field device_path)" = "$dev" ] || fail "the volume is $(volume_field device_path) now"
  log "ublkgwd killed $i: the new daemon took $dev over"
done
n=$(grep -c "took over .* as $dev" /out/ublkgwd.log)
[ "$n" -eq "$kills" ] || fail "$n take-overs logged after $kills kills, want $kills"

# 2. An upgrade: SIGTERM keeps the device for the next daemon.
wait_for_progress $progress_step 120 $load_pid
kill -TERM $daemon
wait $daemon || fail "ublkgwd exited $? on SIGTERM"
grep -q "left $dev for the next ublkgwd" /out/ublkgwd.log || fail "SIGTERM did not leave $dev"
n=$(grep -c 'leaving with every request it sent answered' /out/ublkgwd.log)
[ "$n" -eq 2 ] || fail "$n of 2 queues left with their requests answered: $(grep leaving /out/ublkgwd.log)"
still_there "$dev"
start_daemon
wait_for_health HEALTH_OK 30
log "ublkgwd upgraded: the new daemon took $dev over"
stop_load crash
if dmesg | grep -E 'I/O error|EXT4-fs (error|warning)|Buffer I/O|WARNING:|BUG:'; then
  fail "the kernel logged errors"
fi
umount /mnt/vol || fail "umount failed"
e2fsck -f -n "$dev" >/out/fsck.txt 2>&1 || { cat /out/fsck.txt; fail "e2fsck: the filesystem is not clean"; }
log "$kills kill(s) and an upgrade under fio on ext4: 0 errors, data verified, fsck clean" \
  "(nbdkit aborted and was started again $(server_restarts) times)"

# The device waits for a daemon (the server gone too); a read waits on it.
kill -KILL $daemon
wait $daemon 2>/dev/null
unserve
dd if="$dev" of=/dev/null bs=4k count=1 skip=999 iflag=direct 2>/out/dd-waiting.err &
reader=$!

# 3. Another daemon whose record claims the same id with another mark.
mkdir -p /tmp/other
sed 's/"device_cookie": *"[0-9]*"/"device_cookie": "1"/' /tmp/state/state.json >/tmp/other/state.json
grep -q '"device_cookie": "1"' /tmp/other/state.json || fail "no mark to change: $(cat /tmp/state/state.json)"
ublkgwd --socket /tmp/other.sock --state-dir /tmp/other >/out/other.log 2>&1 &
other=$!
deadline=$(( $(date +%s) + 20 ))
until grep -q "restoring nbd://" /out/other.log; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "the other daemon tried nothing: $(cat /out/other.log)"
  usleep 100000
done
kill -TERM $other
wait $other || fail "the other ublkgwd exited $?"
grep -q "took over" /out/other.log && fail "another daemon took $dev over: $(cat /out/other.log)"
[ -b "$dev" ] || fail "another daemon removed $dev"
kill -0 $reader 2>/dev/null || fail "the waiting read ended while no daemon served"
log "another daemon's record naming $dev leaves it alone"

# 4. Detach removes a device that waits for a daemon.
start_daemon
deadline=$(( $(date +%s) + 20 ))
until volume_field health_detail | grep -q 'its device waits in the kernel'; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "not said to be taken over: $(cat /tmp/list.json)"
  usleep 100000
done
[ "$(volume_field health)" = HEALTH_RESTORING ] || fail "not restoring: $(cat /tmp/list.json)"
ublkgw detach "$dev" || fail "detach of a device left in the kernel failed"
[ ! -e "$dev" ] || fail "$dev still exists after detach"
[ -z "$(ls /dev/ublkc* 2>/dev/null)" ] || fail "left behind: $(ls /dev/ublkc*)"
wait $reader && fail "the read waiting on the removed device succeeded"
grep -qi 'input/output error' /out/dd-waiting.err || fail "not EIO: $(cat /out/dd-waiting.err)"
log "a device left waiting is removed by detach; the read waiting on it got EIO"
kill -TERM $daemon
wait $daemon || fail "ublkgwd exited $?"

# 5. A device without user recovery: said at attach; keep mode detaches it.
serve nbdkit -f -i 127.0.0.1 -p 10809 file /tmp/disk.img >>/out/nbdkit.log 2>&1
wait_for_listen 10809 20
start_daemon --disable-ublk-features user-recovery
dev=$(ublkgw attach nbd://127.0.0.1:10809/) || fail "attach failed"
[ -n "$(volume_field note | grep 'cannot outlive this ublkgwd.*ruled out')" ] ||
  fail "attach does not say the device cannot outlive the daemon: $(cat /tmp/list.json)"
kill -TERM $daemon
wait $daemon || fail "ublkgwd exited $?"
[ ! -e "$dev" ] || fail "$dev, made without user recovery, was left behind"
grep -q 'detaching it' /out/ublkgwd.log || fail "the log does not say why it was detached"
unserve
[ "$expect" = fused ] && kernel_reports_check
log "ok"
