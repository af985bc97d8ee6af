#!/bin/sh
# Guest scenario: `ublkgw features` against the kernel's real ublk driver.
#   before ublk_drv is loaded: exit 3 and the fix (modprobe ublk_drv);
#   after: exit 0, the mask holds every bit of --expect-all and none of
#   --expect-none, and the table and the JSON name the same features.
# Args: --expect-all MASK --expect-none MASK (hex)
. /lib/ublkgw/guest-lib.sh

expect_all=0
expect_none=0
while [ $# -gt 0 ]; do
  case "$1" in
    --expect-all) expect_all=$2; shift 2 ;;
    --expect-none) expect_none=$2; shift 2 ;;
    *) fail "unknown argument $1" ;;
  esac
done

log "without ublk_drv: 'ublkgw features' must explain the fix"
ublkgw features >/out/no-driver.txt 2>&1
rc=$?
cat /out/no-driver.txt
[ "$rc" -eq 3 ] || fail "without the driver, features exited $rc, want 3"
grep -q 'modprobe ublk_drv' /out/no-driver.txt || fail "the error does not name the fix"

log "loading ublk_drv"
load_module ublk_drv
wait_for_path /dev/ublk-control 10

ublkgw features >/out/features.txt 2>&1 || fail "features exited $?"
cat /out/features.txt
ublkgw features --json >/out/features.json || fail "features --json exited $?"

mask=$(json_string /out/features.json mask)
[ -n "$mask" ] || fail "no mask in the JSON output"
log "driver reports $mask; expect all of $expect_all, none of $expect_none"
missing=$(( expect_all & ~mask ))
extra=$(( mask & expect_none ))
[ "$missing" -eq 0 ] || fail "the driver lacks expected bits $(printf 0x%x $missing)"
[ "$extra" -eq 0 ] || fail "the driver reports bits it should not have: $(printf 0x%x $extra)"

[ "$(json_string /out/features.json kernel_release)" = "$(uname -r)" ] ||
  fail "kernel_release does not match uname -r"

# The JSON's supported list has one name per set bit, and the table says
# "yes" for exactly those names.
sed -n '/"supported": \[/,/\]/p' /out/features.json | grep -o 'UBLK_F_[A-Z_]*' >/out/supported.txt
bits=0 m=$(( mask ))
while [ "$m" -ne 0 ]; do bits=$(( bits + (m & 1) )); m=$(( m >> 1 )); done
names=$(wc -l </out/supported.txt)
[ "$names" -eq "$bits" ] || fail "JSON names $names features for $bits set bits"
grep -o ' yes *UBLK_F_[A-Z_]*' /out/features.txt | awk '{print $2}' >/out/table-yes.txt
cmp -s /out/supported.txt /out/table-yes.txt || fail "the table and the JSON disagree"

log "ok: $names features named on $(uname -r)"
