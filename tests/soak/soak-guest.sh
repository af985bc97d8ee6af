#!/bin/sh
# Soak, in the guest (run by tests/soak/run-soak.sh, not by ctest): ext4 on
# a 2-queue volume whose NBD server (nbdkit, file plugin) sits in a network
# namespace of its own; fio with crc32c verify runs back to back on it while,
# every few seconds, one random fault strikes:
#   server    the NBD server SIGKILLed and started again
#   stall     the server SIGSTOPped past the I/O timeout, then SIGCONT
#   cut       the link down for 1-6 s
#   netem     10-50 ms delay and 0-3% loss on the link for a while
#   crash     ublkgwd SIGKILLed and started again (it takes the device over)
#   upgrade   ublkgwd SIGTERMed with --on-stop keep and started again
# After each fault the volume must be healthy again within 60 s. At the end
# every fio run passed with 0 errors, the kernel logged no I/O error, and
# e2fsck finds the filesystem clean.
# Usage: soak-guest.sh SECONDS [UBLKGWD_ARGS...]
. /lib/ublkgw/guest-lib.sh
fio=/usr/local/bin/fio
ip=/usr/local/bin/ip
tc=/usr/local/bin/tc
seconds=${1:?usage: soak-guest.sh SECONDS [UBLKGWD_ARGS...]}
shift
daemon_args="$*"

# rand N: a random number in [0, N).
rand() { echo $(( $(od -An -N2 -tu2 /dev/urandom) % $1 )); }

load_module ublk_drv
wait_for_path /dev/ublk-control 10
server_netns
truncate -s 256M /tmp/disk.img
server=
start_server() {
  # Only the network namespace: 'ip netns exec' would give nbdkit a copy of
  # the mount table, and with it /mnt/vol, which would then outlive umount.
  nsenter --net="$srv_netns" nbdkit -f -i 10.77.0.2 -p 10809 file /tmp/disk.img >>/out/nbdkit.log 2>&1 &
  server=$!
  local deadline=$(( $(date +%s) + 30 ))
  until ublkgw info nbd://10.77.0.2/ --timeout 2 >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "nbdkit does not answer after 30 s"
    usleep 200000
  done
}
daemon=
start_daemon() {
  ublkgwd --state-dir /tmp/state --on-stop keep --io-timeout 5 --reconnect-deadline 300 \
    $daemon_args >>/out/ublkgwd.log 2>&1 &
  daemon=$!
  wait_for_daemon $daemon /out/ublkgwd.log
}

start_server
start_daemon
dev=$(ublkgw attach nbd://10.77.0.2/ --queues 2 --depth 64) || fail "attach failed"
mkfs.ext4 -q -F "$dev" || fail "mkfs.ext4 failed"
mkdir -p /mnt/vol
mount -t ext4 "$dev" /mnt/vol || fail "mount failed"

# The load: fio runs back to back until told to stop; each verifies what
# it wrote.
(
  n=0
  while [ ! -e /tmp/stop-load ]; do
    n=$((n + 1))
    if $fio --name=soak$n --directory=/mnt/vol --ioengine=io_uring --direct=1 --rw=randwrite \
        --bs=4k --iodepth=16 --numjobs=2 --size=24M --eta=never --verify=crc32c \
        --do_verify=1 --verify_fatal=1 --group_reporting --output=/out/fio-$n.txt; then
      echo "$n" >>/out/fio-passed
    else
      echo "$n" >>/out/fio-failed
    fi
    rm -f /mnt/vol/soak$n.*
  done
) &
load=$!

end=$(( $(date +%s) + seconds ))
faults=0
while [ "$(date +%s)" -lt "$end" ]; do
  usleep $(( (2 + $(rand 8)) * 1000000 ))
  faults=$((faults + 1))
  case $(rand 6) in
    0) what=server
       kill -KILL $server; wait $server 2>/dev/null
       usleep $(( $(rand 3000) * 1000 ))
       start_server ;;
    1) what=stall
       kill -STOP $server
       usleep $(( (6 + $(rand 4)) * 1000000 ))
       kill -CONT $server ;;
    2) what=cut
       $ip link set gw0 down
       usleep $(( (1 + $(rand 6)) * 1000000 ))
       $ip link set gw0 up ;;
    3) what=netem
       $tc qdisc add dev gw0 root netem delay $((10 + $(rand 41)))ms loss $(rand 4)% ||
         fail "no netem"
       usleep $(( (3 + $(rand 8)) * 1000000 ))
       $tc qdisc del dev gw0 root ;;
    4) what=crash
       kill -KILL $daemon; wait $daemon 2>/dev/null
       start_daemon ;;
    5) what=upgrade
       kill -TERM $daemon; wait $daemon || fail "ublkgwd exited $? on SIGTERM"
       start_daemon ;;
  esac
  echo "$what" >>/out/faults
  [ -b "$dev" ] || fail "$dev is gone after fault $faults ($what)"
  # Healthy again within 60 s. A server that died of the fault (nbdkit 1.32
  # can abort when a connection it is replying on is cut) is started again.
  deadline=$(( $(date +%s) + 60 ))
  until [ "$(volume_field health)" = HEALTH_OK ]; do
    if ! kill -0 $server 2>/dev/null; then
      wait $server 2>/dev/null
      echo "server-died-after-$what" >>/out/faults
      log "nbdkit died after the $what; starting it again"
      start_server
    fi
    [ "$(date +%s)" -lt "$deadline" ] ||
      fail "not healthy 60 s after fault $faults ($what): $(volume_field health_detail)"
    usleep 200000
  done
  log "fault $faults: $what; healthy again"
done

touch /tmp/stop-load
wait $load
[ ! -s /out/fio-failed ] || fail "fio runs failed: $(cat /out/fio-failed)"
runs=$(wc -l </out/fio-passed)
[ "$runs" -ge 1 ] || fail "no fio run completed"
if dmesg | grep -E 'I/O error|EXT4-fs (error|warning)|Buffer I/O|WARNING:|BUG:'; then
  fail "the kernel logged errors"
fi
umount /mnt/vol || fail "umount failed"
e2fsck -f -n "$dev" >/out/fsck.txt 2>&1 || { cat /out/fsck.txt; fail "e2fsck: not clean"; }
ublkgw detach "$dev" || fail "detach failed"
kill -TERM $daemon; wait $daemon
log "soak: $seconds s, $faults faults ($(sort /out/faults | uniq -c | tr -s ' \n' ' ')), $runs fio runs verified, fsck clean"
log "ok"
