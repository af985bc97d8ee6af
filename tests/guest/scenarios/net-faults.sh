#!/bin/sh
# Guest scenario: the network between ublkgw and its server fails. The
# server (nbdkit, file plugin) runs in a network namespace of its own
# behind a veth pair (10.77.0.2; ublkgw at 10.77.0.1):
#  1. fio (2 queues, random 4k writes with crc32c, each run read back and
#     verified, back to back) while the link is taken down until the I/O timeout (2 s)
#     drops the connections, then up again, 5 times: each cut is seen
#     (reconnecting) and healed (ok); fio ends with no error.
#  2. netem on the link, 10 ms delay and 2% loss: fio with verify passes.
#  3. a path that drops everything: a read waits while its queue tries to
#     connect (SYNs lost); a forced detach ends the attempt at once, not
#     at its 10 s connect timeout, and the read fails with EIO.
# Usage: net-faults.sh
. /lib/ublkgw/guest-lib.sh
fio=/usr/local/bin/fio
ip=/usr/local/bin/ip
tc=/usr/local/bin/tc

load_module ublk_drv
wait_for_path /dev/ublk-control 10
server_netns
truncate -s 256M /tmp/disk.img
serve $ip netns exec srv nbdkit -f -i 10.77.0.2 -p 10809 file /tmp/disk.img >>/out/nbdkit.log 2>&1
deadline=$(( $(date +%s) + 30 ))
until ublkgw info nbd://10.77.0.2/ --timeout 2 >/dev/null 2>&1; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "nbdkit in the namespace does not answer after 30 s"
  usleep 200000
done

ublkgwd --state-dir '' --io-timeout 2 --reconnect-deadline 60 >/out/ublkgwd.log 2>&1 &
daemon=$!
wait_for_path /run/ublkgw/ublkgw.sock 20
dev=$(ublkgw attach nbd://10.77.0.2/ --queues 2 --depth 64) || fail "attach failed"

# 1. Five link cuts under fio.
start_load cuts --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k \
  --iodepth=32 --numjobs=2 --offset_increment=128M --size=16M --eta=never \
  --verify=crc32c --do_verify=1 --verify_fatal=1 --group_reporting
cut_link() { $ip link set gw0 down; }
heal_link() { $ip link set gw0 up; }
fault_cycles 5 cut_link heal_link "$load_pid"
stop_load cuts
n=$(reconnects "$dev")
[ "$n" -ge 5 ] || fail "$n reconnects after 5 link cuts, want 5 or more"
log "5 link cuts under fio: 0 errors, data verified, $n reconnects"

# 2. A slow, lossy path.
$tc qdisc add dev gw0 root netem delay 10ms loss 2% || fail "no netem"
$fio --name=netem --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite --bs=16k \
  --iodepth=16 --numjobs=2 --offset_increment=128M --size=16M --eta=never \
  --verify=crc32c --do_verify=1 --verify_fatal=1 --group_reporting \
  --output=/out/fio-netem.txt || { cat /out/fio-netem.txt; fail "fio failed over netem"; }
grep -q 'err= 0' /out/fio-netem.txt || fail "fio reported errors over netem"
[ "$(volume_field failed_requests)" = 0 ] || fail "requests failed over netem: $(cat /tmp/list.json)"
$tc qdisc del dev gw0 root
log "netem (10 ms, 2% loss): fio with verify passed"

# 3. Everything lost: detach while a connect waits.
$tc qdisc add dev gw0 root netem loss 100% || fail "no netem"
dd if="$dev" of=/dev/null bs=4k count=1 skip=4321 iflag=direct 2>/out/dd-blackhole.err &
reader=$!
wait_for_health HEALTH_RECONNECTING 20
started=$(date +%s)
ublkgw detach "$dev" --force || fail "forced detach failed"
took=$(( $(date +%s) - started ))
[ "$took" -le 4 ] || fail "a forced detach took $took s: it waited for a connect attempt"
wait $reader && fail "the read succeeded on a detached device"
grep -qi 'input/output error' /out/dd-blackhole.err || fail "not EIO: $(cat /out/dd-blackhole.err)"
$tc qdisc del dev gw0 root
log "everything lost: a forced detach ended the connect attempt ($took s), the read got EIO"

kill -TERM $daemon
wait $daemon || fail "ublkgwd exited $?"
unserve
log "ok (nbdkit aborted and was started again $(server_restarts) times)"
