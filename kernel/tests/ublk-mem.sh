#!/bin/sh
# Guest scenario: the ublk layer end to end with a RAM-backed target
# (kernel/tests/ublk_mem_target.cc): ADD_DEV, SET_PARAMS, START_DEV,
# the copy data path, STOP_DEV and DEL_DEV. Data written with O_DIRECT reads
# back the same; discard reads back as zeroes; stopping removes both device
# nodes.
# Usage: ublk-mem.sh [--fused]: with --fused (a kernel built by
# kernel/build.sh), the target moves data with IORING_OP_FUSED_CMD, and the
# kernel must have logged no UBSAN report, warning or oops by the end. On a
# kernel built with kernel/build.sh --debug, that includes KASAN's reports,
# and kmemleak must find nothing of io_uring's or ublk's left unreferenced.
. /lib/ublkgw/guest-lib.sh
mode=${1:-}

load_module ublk_drv
wait_for_path /dev/ublk-control 10
[ "$mode" = --fused ] && kernel_reports_start

ublk_mem_target 64 32 $mode >/out/target.log 2>&1 &
target=$!
deadline=$(( $(date +%s) + 30 ))
until grep -q '^ready ' /out/target.log; do
  kill -0 $target 2>/dev/null || { cat /out/target.log; fail "the target exited early"; }
  [ "$(date +%s)" -lt "$deadline" ] || fail "the device did not come up within 30 s"
  usleep 50000
done
dev=$(sed -n 's/^ready //p' /out/target.log)
log "device $dev is up"
[ -b "$dev" ] || fail "$dev is not a block device"
size=$(blockdev --getsize64 "$dev")
[ "$size" -eq $((64 << 20)) ] || fail "size $size, want $((64 << 20))"

dd if=/dev/urandom of=/tmp/pattern bs=1M count=16 2>/dev/null
dd if=/tmp/pattern of="$dev" bs=1M seek=8 oflag=direct 2>/dev/null || fail "write failed"
dd if="$dev" of=/tmp/back bs=1M skip=8 count=16 iflag=direct 2>/dev/null || fail "read failed"
cmp /tmp/pattern /tmp/back || fail "data read back differs"
log "16 MiB written and read back with O_DIRECT"

# The last sector, and I/O past the end refused.
dd if=/tmp/pattern of="$dev" bs=512 count=1 seek=$(( (64 << 11) - 1 )) oflag=direct 2>/dev/null ||
  fail "writing the last sector failed"
if dd if=/tmp/pattern of="$dev" bs=512 count=1 seek=$(( 64 << 11 )) oflag=direct 2>/dev/null; then
  [ "$(blockdev --getsize64 "$dev")" -eq $((64 << 20)) ] || fail "the device grew"
fi

blkdiscard -o $((8 << 20)) -l $((4 << 20)) "$dev" || fail "blkdiscard failed"
dd if="$dev" of=/tmp/zero bs=1M skip=8 count=4 iflag=direct 2>/dev/null
dd if=/dev/zero of=/tmp/zeroes bs=1M count=4 2>/dev/null
cmp /tmp/zero /tmp/zeroes || fail "discarded range does not read back as zeroes"
log "discard reads back as zeroes"

kill -TERM $target
wait $target
rc=$?
cat /out/target.log
[ "$rc" -eq 0 ] || fail "the target exited $rc"
[ ! -e "$dev" ] || fail "$dev still exists after stop"
[ ! -e "${dev%b*}c${dev##*ublkb}" ] || fail "the char device still exists after delete"
log "device stopped and deleted"
if [ "$mode" = --fused ]; then
  for check in 'a READ request' 'a refused slave fails' 'a SEND_ZC slave refused' \
      'a short slave' 'a drained fused READ' 'a SEND slave' 'a SEND_ZC slave drains' \
      'a RECV slave fills' 'a ring exited' 'a cancelled RECV slave' \
      'a master that is not a ublk command' 'a ring without SQE128' \
      'a slave past the request' 'another ublk command as master'; do
    grep -q "^fused: $check" /out/target.log || fail "the check '$check' did not run"
  done
  kernel_reports_check
fi
log "ok"
