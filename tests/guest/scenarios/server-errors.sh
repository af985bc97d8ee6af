#!/bin/sh
# Guest scenario: what an application reads from the device when the NBD
# server fails a request. Each error nbdkit's error filter can inject
# (EPERM EIO ENOMEM EINVAL ENOSPC ESHUTDOWN) is injected into every read and
# write of one export; an O_DIRECT pread and pwrite on /dev/ublkbN must
# fail with the errno the block layer carries for it (the server's own
# where the block layer has it: ENOMEM, EINVAL, ENOSPC; EIO for EPERM,
# which it has not). NBD_ESHUTDOWN (the server going away) makes ublkgw
# reconnect and send the request again: it fails with EIO only after its
# 5 attempts. NBD_EOVERFLOW and NBD_ENOTSUP, which nbdkit cannot inject,
# come from the hostile server's error-N fault on reads: EOVERFLOW (the
# block layer carries it) and EOPNOTSUPP.
. /lib/ublkgw/guest-lib.sh
load_module ublk_drv
wait_for_path /dev/ublk-control 10
ublkgwd >/out/ublkgwd.log 2>&1 &
wait_for_path /run/ublkgw/ublkgw.sock 20

port=10810
for case in EPERM:EIO EIO:EIO ENOMEM:ENOMEM EINVAL:EINVAL ENOSPC:ENOSPC ESHUTDOWN:EIO; do
  inject=${case%:*}
  want=${case#*:}
  port=$((port + 1))
  rm -f /tmp/inject
  nbdkit -f -i 127.0.0.1 -p $port --filter=error memory 16M \
    error="$inject" error-rate=100% error-file=/tmp/inject >/out/nbdkit-$inject.log 2>&1 &
  nbdkit_pid=$!
  wait_for_listen $port 20
  dev=$(ublkgw attach nbd://127.0.0.1:$port/ --io-timeout 0) || fail "attach ($inject) failed"
  dd if=/dev/urandom of=/tmp/block bs=4096 count=1 2>/dev/null
  dd if=/tmp/block of="$dev" bs=4096 count=1 oflag=direct conv=notrunc 2>/dev/null ||
    fail "a write before the fault failed"
  touch /tmp/inject
  for op in read write; do
    got=$(direct_io $op "$dev" 16384 4096)
    [ "$got" = "$want" ] || fail "$op with the server failing $inject: want $want, got $got"
    log "server $inject -> $op fails with $want"
  done
  rm -f /tmp/inject
  dd if="$dev" of=/tmp/back bs=4096 count=1 iflag=direct 2>/dev/null ||
    fail "a read after the fault ($inject) failed"
  cmp -s /tmp/block /tmp/back || fail "data written before the fault ($inject) changed"
  ublkgw detach "$dev" || fail "detach ($inject) failed"
  kill "$nbdkit_pid"
  wait "$nbdkit_pid" 2>/dev/null
done
grep -q "NBD_ESHUTDOWN" /out/ublkgwd.log || fail "the daemon never logged NBD_ESHUTDOWN"

for case in 75:EOVERFLOW 95:EOPNOTSUPP; do
  code=${case%:*}
  want=${case#*:}
  port=$((port + 1))
  # Every read fails once told to (SIGUSR1): the attach's own reads pass.
  hostile_nbd_server $port 16 error-$code 1000000 0 2>/out/hostile-$code.log &
  hostile=$!
  wait_for_listen $port 20
  dev=$(ublkgw attach nbd://127.0.0.1:$port/ --io-timeout 0) || fail "attach (NBD error $code) failed"
  kill -USR1 $hostile
  got=$(direct_io read "$dev" 8192 4096)
  [ "$got" = "$want" ] || fail "read with the server failing it with NBD error $code: want $want, got $got"
  log "NBD error $code -> read fails with $want"
  ublkgw detach "$dev" || fail "detach (NBD error $code) failed"
  kill $hostile
  wait $hostile 2>/dev/null
done
log "ok"
