#!/bin/sh
# Guest scenario: one sick volume never holds up the others. Volume A's
# server is stopped (SIGSTOP) with a read in flight; a graceful detach of A
# then waits for that read (up to its grace period). Meanwhile list, an
# attach of volume B, I/O on B, a resize of B and B's detach must each
# finish in seconds: the control plane holds no lock across A's drain.
. /lib/ublkgw/guest-lib.sh
load_module ublk_drv
wait_for_path /dev/ublk-control 10
nbdkit -f -i 127.0.0.1 -p 10811 memory 64M >/out/nbdkit-a.log 2>&1 &
slow=$!
nbdkit -f -i 127.0.0.1 -p 10812 memory 64M >/out/nbdkit-b.log 2>&1 &
wait_for_listen 10811 20
wait_for_listen 10812 20
ublkgwd >/out/ublkgwd.log 2>&1 &
wait_for_path /run/ublkgw/ublkgw.sock 20

a=$(ublkgw attach nbd://127.0.0.1:10811/ --io-timeout 0) || fail "attach of A failed"
kill -STOP $slow
dd if="$a" of=/dev/null bs=4096 count=1 skip=7 iflag=direct 2>/dev/null &
reader=$!
usleep 500000
ublkgw detach "$a" >/out/detach-a.txt 2>&1 &
detacher=$!
usleep 500000
kill -0 $detacher 2>/dev/null || fail "the detach of A did not wait for its read in flight"

# within SECONDS CMD...: CMD must finish within SECONDS.
within() {
  local limit=$1 start end
  shift
  start=$(date +%s)
  "$@" || fail "'$*' failed while A drains"
  end=$(date +%s)
  [ $((end - start)) -le "$limit" ] || fail "'$*' took $((end - start)) s while A drains"
}
within 3 ublkgw list
start=$(date +%s)
b=$(ublkgw attach nbd://127.0.0.1:10812/ --timeout 30) || fail "attach of B failed while A drains"
[ $(( $(date +%s) - start )) -le 3 ] || fail "attaching B took $(( $(date +%s) - start )) s while A drains"
log "attached $b while $a drains"
within 3 dd if=/dev/urandom of="$b" bs=64k count=16 oflag=direct
within 3 ublkgw resize "$b" --size 32M
within 3 ublkgw stats "$b"
within 3 ublkgw detach "$b"
kill -0 $detacher 2>/dev/null || fail "A's detach ended before the checks: they proved nothing"
log "list, attach, I/O, resize, stats and detach of B went on while A drained"
kill -CONT $slow
wait $detacher || fail "the detach of A failed: $(cat /out/detach-a.txt)"
wait $reader || fail "A's read in flight failed, though its server came back"
[ ! -e "$a" ] || fail "$a is still there after its detach"
log "ok"
