#!/bin/busybox sh
# PID 1 of a ublkgw test guest (packed as /init by run-guest.sh): mounts the
# usual filesystems, runs /scenario, sends /out back over the console as
# base64 between marker lines, prints the exit marker and powers off.
/bin/busybox --install -s
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
ip link set lo up
# Names resolve from files only: no DNS lookups (they would wait for a
# resolver that does not exist, and nothing may leave the guest anyway).
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n' >/etc/hosts
printf 'hosts: files\n' >/etc/nsswitch.conf
echo "UBLKGW-GUEST-KERNEL: $(uname -r) cpus=$(nproc) uptime=$(cut -d' ' -f1 /proc/uptime)s"

cd /root
eval "set -- $(cat /lib/ublkgw/scenario.args)"
/scenario "$@" </dev/null
rc=$?

# Kernel messages on the console would corrupt the base64 stream.
dmesg -n 1
dmesg >/out/dmesg.log 2>/dev/null
echo "UBLKGW-OUT-BEGIN"
tar -czf - -C /out . | base64
echo "UBLKGW-OUT-END"
echo "UBLKGW-GUEST-EXIT: $rc"
sync
reboot -f
