#!/bin/sh
# Guest scenario: the data path is chosen from what the kernel really does.
#  - kernels with UBLK_F_AUTO_BUF_REG and fixed-buffer socket ops (sid's
#    7.2): auto takes zero copy over TCP and over a unix socket (no SEND_ZC
#    there), a ublk command per request unless asked; small (SEND) and large (SEND_ZC) writes and reads come back
#    intact; a read's holes (qemu-nbd sends them for a sparse file) are
#    zeroed in the kernel, into a buffer that held other data; copy can
#    still be asked for;
#  - kernels without (trixie's 6.12): auto takes copy and says why;
#    --data-path zero-copy is refused (exit 3) naming the missing piece,
#    and leaves no device behind.
#  - file-ops: the zero-copy checks with SEND and RECV ruled out
#    (ublkgwd --disable-socket-ops send,recv), so writes go with
#    WRITE_FIXED and reads with READ_FIXED, as on 6.16 to 7.1.
#  - zero-copy+batch: the zero-copy checks with ublkgwd --batch-io, on
#    a kernel with UBLK_F_BATCH_IO (7.0+): ublk commands in batches, on
#    zero copy and on copy.
#  - explicit: as on 6.15, which has those ops and no auto registration
#    (ublkgwd --disable-ublk-features auto-buf-reg as well): each request's
#    buffer is registered with REGISTER_IO_BUF and unregistered before its
#    commit.
# Usage: data-path.sh zero-copy|copy|file-ops|explicit|zero-copy+batch
#        (what auto should choose)
. /lib/ublkgw/guest-lib.sh
expect=$1
daemon_args=$(path_daemon_args "$expect")
case "$expect" in
  file-ops) daemon_args="--disable-socket-ops send,recv" ;;
  explicit) daemon_args="--disable-socket-ops send,recv --disable-ublk-features auto-buf-reg" ;;
esac

load_module ublk_drv
wait_for_path /dev/ublk-control 10
truncate -s 64M /tmp/sparse.img
qemu-nbd -f raw -x disk -b 127.0.0.1 -p 10809 --persistent --shared=8 --discard=unmap \
  /tmp/sparse.img >/out/qemu-nbd.log 2>&1 &
wait_for_listen 10809 20
GLOG_v=2 ublkgwd --state-dir '' $daemon_args >/out/ublkgwd.log 2>&1 &
daemon=$!
wait_for_path /run/ublkgw/ublkgw.sock 20
deadline=$(( $(date +%s) + 60 ))
until ublkgw info nbd://127.0.0.1:10809/disk --timeout 30 >/dev/null 2>&1; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "qemu-nbd does not answer a handshake after 60 s"
  usleep 200000
done

ublkgw daemon-info --json >/out/daemon-info.json || fail "daemon-info failed"
devices() { ls /dev/ublkb* 2>/dev/null | wc -l; }

# Writes of 4 KiB and 1 MiB, read back with both sizes.
round_trip() {
  local dev=$1
  dd if=/dev/urandom of=/tmp/pattern bs=1M count=8 2>/dev/null
  dd if=/tmp/pattern of="$dev" bs=4k count=1024 oflag=direct 2>/dev/null || fail "4k writes failed"
  dd if=/tmp/pattern of="$dev" bs=1M skip=4 seek=4 count=4 oflag=direct 2>/dev/null ||
    fail "1M writes failed"
  dd if="$dev" of=/tmp/back bs=1M count=8 iflag=direct 2>/dev/null || fail "1M reads failed"
  cmp /tmp/pattern /tmp/back || fail "data read back in 1M reads differs"
  dd if="$dev" of=/tmp/back bs=4k count=2048 iflag=direct 2>/dev/null || fail "4k reads failed"
  cmp /tmp/pattern /tmp/back || fail "data read back in 4k reads differs"
}

if [ "$expect" = copy ]; then
  dev=$(ublkgw attach nbd://127.0.0.1:10809/disk) || fail "attach failed"
  ublkgw list --json >/out/list.json
  check_data_path /out/list.json copy
  grep -q 'UBLK_F_AUTO_BUF_REG' /out/list.json || fail "no reason given for copy"
  round_trip "$dev"
  ublkgw detach "$dev" || fail "detach failed"
  ublkgw attach nbd://127.0.0.1:10809/disk --data-path zero-copy 2>/out/err.zc; rc=$?
  cat /out/err.zc
  [ $rc -eq 3 ] || fail "--data-path zero-copy exited $rc on $(uname -r), want 3"
  grep -q 'UBLK_F_AUTO_BUF_REG' /out/err.zc || fail "the refusal does not name the missing piece"
  grep -q -- '--data-path' /out/err.zc || fail "the refusal does not say what to do"
  [ "$(devices)" -eq 0 ] || fail "a refused attach left a device behind"
  log "auto chose copy and said why; zero copy refused clearly"
  kill -TERM $daemon
  wait $daemon || fail "ublkgwd exited $?"
  log "ok"
  exit 0
fi

grep -q '"zero-copy"' /out/daemon-info.json || fail "daemon-info does not offer zero-copy"

dev=$(ublkgw attach nbd://127.0.0.1:10809/disk) || fail "attach failed"
ublkgw list --json >/out/list.json
zc=zero-copy copy=copy
[ "$expect" = zero-copy+batch ] && zc=zero-copy+batch copy=copy+batch
check_data_path /out/list.json $zc
detail=$(json_string /out/list.json data_path_detail)
case "$expect" in
  file-ops|explicit)
    echo "$detail" | grep -q 'writes sent with WRITE_FIXED, reads received with READ_FIXED' ||
      fail "not the file ops: $detail" ;;
esac
case "$expect" in
  explicit) want='registered with REGISTER_IO_BUF' ;;
  *) want='registered by the driver' ;;
esac
echo "$detail" | grep -q "$want" || fail "buffers not $want: $detail"

ublkgw list | tee /out/list.txt
grep -q ' zero-copy ' /out/list.txt || fail "list does not show zero-copy"

# Holes: the file is sparse, so qemu-nbd answers reads of unwritten ranges
# with hole chunks. dd reuses one buffer: the first 64 KiB block is data,
# the second a hole that must come back as zeros, not as the first block.
dd if=/dev/urandom of=/tmp/data64k bs=64k count=1 2>/dev/null
dd if=/tmp/data64k of="$dev" bs=64k seek=256 oflag=direct 2>/dev/null || fail "write failed"
dd if="$dev" of=/tmp/two bs=64k skip=256 count=2 iflag=direct 2>/dev/null || fail "read failed"
dd if=/dev/zero of=/tmp/expect bs=64k count=2 2>/dev/null
dd if=/tmp/data64k of=/tmp/expect conv=notrunc 2>/dev/null
cmp /tmp/expect /tmp/two || fail "a hole after data did not read back as zeros"
# One read across data and hole: a data chunk and a hole chunk at offsets.
dd if="$dev" of=/tmp/one bs=128k skip=128 count=1 iflag=direct 2>/dev/null || fail "read failed"
cmp /tmp/expect /tmp/one || fail "a read across data and a hole differs"
grep -q 'zeroing a hole' /out/ublkgwd.log || fail "no hole was zeroed: qemu-nbd sent none?"
log "holes read back as zeros, zeroed in the kernel"
# qemu-nbd writes each chunk on its own without TCP_NODELAY: the hole's
# chunk waits under Nagle's algorithm for the ACK of the data's, which the
# queue sends at once (acks_pushed). Left to the delayed-ACK timer, many of
# these reads wait 40 ms more: the 200 took 3.2-3.5 s under TCG, against
# 2.3 s with the ACKs pushed; stalled every time, they would take 8 s.
start=$(uptime_ms)
for i in $(seq 200); do
  dd if="$dev" of=/dev/null bs=128k skip=128 count=1 iflag=direct 2>/dev/null || fail "read failed"
done
ms=$(( $(uptime_ms) - start ))
ublkgw stats "$dev" --json >/out/stats-holes.json || fail "ublkgw stats failed"
acks=$(json_string /out/stats-holes.json acks_pushed)
[ "${acks:-0}" -ge 200 ] || fail "acks_pushed ${acks:-0} after 200 reads of data and a hole, want >= 200"
[ "$ms" -lt 4000 ] || fail "200 reads of data and a hole took $ms ms: stalled on delayed ACKs?"
log "200 reads of data and a hole in $ms ms, $acks ACKs pushed at once"

round_trip "$dev"
log "4k and 1M writes and reads intact on zero copy over TCP"
ublkgw detach "$dev" || fail "detach failed"

# Copy can still be asked for.
dev=$(ublkgw attach nbd://127.0.0.1:10809/disk --data-path copy) || fail "attach (copy) failed"
ublkgw list --json >/out/list-copy.json
check_data_path /out/list-copy.json $copy
dd if="$dev" of=/tmp/back bs=1M count=8 iflag=direct 2>/dev/null || fail "read (copy) failed"
cmp /tmp/pattern /tmp/back || fail "copy path reads differ from what zero copy wrote"
ublkgw detach "$dev" || fail "detach failed"
log "copy path on request reads what zero copy wrote"

# A unix socket: no SEND_ZC there, zero copy all the same.
nbdkit -f -U /tmp/nbd.sock memory 64M >/out/nbdkit.log 2>&1 &
wait_for_path /tmp/nbd.sock 20
dev=$(ublkgw attach 'nbd+unix:///?socket=/tmp/nbd.sock') || fail "attach over unix failed"
ublkgw list --json >/out/list-unix.json
check_data_path /out/list-unix.json $zc
grep -q 'SEND_ZC' /out/list-unix.json && fail "SEND_ZC chosen for a unix socket"
round_trip "$dev"
ublkgw detach "$dev" || fail "detach failed"
log "zero copy over a unix socket"

kill -TERM $daemon
wait $daemon || fail "ublkgwd exited $?"
log "ok"
