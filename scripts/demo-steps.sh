#!/bin/sh
# The demo's steps (POSIX sh, busybox too): start an NBD server (nbdkit,
# memory, 1 GiB) and ublkgwd, attach the export, put ext4 on it, write
# files, detach, attach again and verify the files' checksums. Runs as root
# on a host with ublk, with ublkgw, ublkgwd, nbdkit and mkfs.ext4 on PATH;
# scripts/demo.sh runs it (inside a QEMU guest when the host has no ublk).
set -u
dir=$(mktemp -d /tmp/ublkgw-demo.XXXXXX)
step() { printf '\n--> %s\n' "$*"; }
die() { printf '\nDEMO FAILED: %s\n' "$*"; exit 1; }
pids=""
cleanup() {
  umount "$dir/mnt" 2>/dev/null
  for p in $pids; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

if [ ! -e /dev/ublk-control ]; then
  if [ -f /lib/ublkgw/guest-lib.sh ]; then
    . /lib/ublkgw/guest-lib.sh
    load_module ublk_drv
  else
    modprobe ublk_drv || die "no ublk driver: this kernel needs CONFIG_BLK_DEV_UBLK"
  fi
fi

step "starting an NBD server: nbdkit, a 1 GiB export in memory, on $dir/nbd.sock"
nbdkit -f -U "$dir/nbd.sock" memory 1G >"$dir/nbdkit.log" 2>&1 &
pids="$pids $!"
uri="nbd+unix:///?socket=$dir/nbd.sock"
for _ in $(seq 200); do [ -S "$dir/nbd.sock" ] && break; sleep 0.05; done

step "starting the daemon: ublkgwd --socket $dir/ublkgw.sock --state-dir $dir/state"
ublkgwd --socket "$dir/ublkgw.sock" --state-dir "$dir/state" >"$dir/ublkgwd.log" 2>&1 &
pids="$pids $!"
for _ in $(seq 200); do [ -S "$dir/ublkgw.sock" ] && break; sleep 0.05; done
ublkgw() { command ublkgw "$@" --socket "$dir/ublkgw.sock"; }

step "what the export offers: ublkgw info '$uri'"
command ublkgw info "$uri" || die "info failed"

step "attaching: ublkgw attach '$uri' --queues 2"
dev=$(ublkgw attach "$uri" --queues 2) || die "attach failed"
echo "$dev"
ublkgw list

step "making an ext4 filesystem on $dev and mounting it"
mkfs.ext4 -q -F "$dev" || die "mkfs.ext4 failed"
mkdir -p "$dir/mnt"
mount -t ext4 "$dev" "$dir/mnt" || die "mount failed"
df -h "$dir/mnt" | tail -n 1

step "writing five files and recording their checksums"
for i in 1 2 3 4 5; do
  dd if=/dev/urandom of="$dir/mnt/file$i" bs=1M count=$((i * 4)) 2>/dev/null || die "write failed"
done
(cd "$dir/mnt" && sha256sum file*) | tee "$dir/sums"
sync

step "what the daemon saw: ublkgw stats $dev"
ublkgw stats "$dev" || die "stats failed"

step "unmounting and detaching $dev"
umount "$dir/mnt" || die "umount failed"
ublkgw detach "$dev" || die "detach failed"
[ -e "$dev" ] && die "$dev is still there"
echo "detached; $dev is gone"

step "attaching again and checking every file"
dev=$(ublkgw attach "$uri" --queues 2) || die "re-attach failed"
echo "$dev"
mount -t ext4 "$dev" "$dir/mnt" || die "mount failed"
(cd "$dir/mnt" && sha256sum -c "$dir/sums") || die "checksums differ"
umount "$dir/mnt"
ublkgw detach "$dev" || die "detach failed"

printf '\nDEMO OK: the export was attached as a block device, formatted, filled,\n'
printf 'detached and attached again, and every file read back intact.\n'
