#!/bin/sh
# Guest scenario: fio with verify through ublkgw (2 queues, depth 128):
# random writes with crc32c checksums, then a separate read-back pass that
# verifies them; then detach (forced) while fio is running: fio ends with
# errors, nothing hangs, and the device is gone.
# Usage: attach-fio.sh ASK EXPECT [DETAIL [UBLKGWD_ARGS...]]: the
# --data-path to ask for (auto, copy, zero-copy, fused), the one the volume must
# get, words its data_path_detail must hold, and flags for the daemon.
. /lib/ublkgw/guest-lib.sh
fio=/usr/local/bin/fio
ask=${1:?--data-path to ask for}
expect=${2:?data path the volume must get}
want_detail=${3:-}
shift 2; [ $# -gt 0 ] && shift

load_module ublk_drv
wait_for_path /dev/ublk-control 10
nbdkit -f -i 127.0.0.1 -p 10809 memory 256M >/out/nbdkit.log 2>&1 &
wait_for_listen 10809 20
ublkgwd "$@" >/out/ublkgwd.log 2>&1 &
daemon=$!
wait_for_path /run/ublkgw/ublkgw.sock 20

dev=$(ublkgw attach nbd://127.0.0.1:10809/ --queues 2 --depth 128 --data-path "$ask") ||
  fail "attach failed"
ublkgw list --json >/out/list-attached.json
check_data_path /out/list-attached.json "$expect"
if [ -n "$want_detail" ]; then
  grep -q "$want_detail" /out/list-attached.json ||
    fail "data path is not '$want_detail': $(json_string /out/list-attached.json data_path_detail)"
fi
log "attached $dev ($expect data path)"

$fio --name=write --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite \
  --bs=4k --iodepth=32 --numjobs=2 --offset_increment=64M --size=32M --eta=never \
  --verify=crc32c --do_verify=0 --verify_state_save=0 --group_reporting \
  --output=/out/fio-write.txt || { cat /out/fio-write.txt; fail "fio write failed"; }
$fio --name=write --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite \
  --bs=4k --iodepth=32 --numjobs=2 --offset_increment=64M --size=32M --eta=never \
  --verify=crc32c --verify_only --verify_state_save=0 --group_reporting \
  --output=/out/fio-verify.txt || { cat /out/fio-verify.txt; fail "fio verify failed"; }
grep -q 'err= 0' /out/fio-verify.txt || fail "fio reported errors"
log "fio: 64 MiB of random 4k writes verified (crc32c) in a read-back pass"
ublkgw list --json >/out/list.json
grep -q '"failed_requests": "0"' /out/list.json || fail "requests failed: $(cat /out/list.json)"

# Detach under load, graceful then forced: fio must end, with errors, and
# nothing hangs.
detach_under_load() {
  $fio --name=load --filename="$dev" --ioengine=io_uring --direct=1 --rw=randrw --bs=16k \
    --iodepth=32 --numjobs=2 --time_based --runtime=120 --eta=never --output=/out/fio-load.txt \
    2>/out/fio-load.err &
  fio_pid=$!
  usleep 1500000
  kill -0 $fio_pid 2>/dev/null || fail "fio ended before the detach"
  ublkgw detach "$dev" "$@" || fail "detach $* failed"
  deadline=$(( $(date +%s) + 30 ))
  while kill -0 $fio_pid 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "fio still runs 30 s after detach $*"
    usleep 100000
  done
  wait $fio_pid && fail "fio succeeded although its device was detached"
  [ ! -e "$dev" ] || fail "$dev still exists"
  log "detach $* under load: fio ended with errors, device gone"
}
detach_under_load
dev=$(ublkgw attach nbd://127.0.0.1:10809/ --queues 2 --depth 128 --data-path "$ask") ||
  fail "attach failed"
detach_under_load --force

kill -TERM $daemon
wait $daemon || fail "ublkgwd exited $?"
log "ok"
