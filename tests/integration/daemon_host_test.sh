#!/usr/bin/env bash
# ublkgwd and the CLI on a host without ublk (the host kernel here has
# none): the API serves, validates requests, and refuses to attach with the
# reason; no daemon -> a clear hint. Usage: daemon_host_test.sh BIN_DIR
set -u
bin=${1:?usage: daemon_host_test.sh BIN_DIR}
ublkgw=$bin/cli/ublkgw
ublkgwd=$bin/control/ublkgwd
dir=$(mktemp -d)
sock=$dir/ublkgw.sock
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
cleanup() { [[ -n "${daemon:-}" ]] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

# No daemon yet.
err=$("$ublkgw" list --socket "$sock" 2>&1 >/dev/null); rc=$?
[[ $rc -eq 6 ]] || fail "list without a daemon exited $rc, want 6"
grep -q "is the daemon running" <<<"$err" || fail "no hint to start the daemon: $err"

"$ublkgwd" --socket "$sock" --control-device "$dir/no-ublk-control" 2>"$dir/daemon.log" &
daemon=$!
for _ in $(seq 200); do [[ -S "$sock" ]] && break; sleep 0.05; done
[[ -S "$sock" ]] || { cat "$dir/daemon.log"; fail "the daemon made no socket"; exit 1; }
mode=$(stat -c %a "$sock")
[[ "$mode" == 600 ]] || fail "socket mode is $mode, want 600"

out=$("$ublkgw" list --socket "$sock" 2>&1); rc=$?
[[ $rc -eq 0 ]] || fail "list exited $rc: $out"
grep -q "no volumes attached" <<<"$out" || fail "empty list not said: $out"
json=$("$ublkgw" list --json --socket "$sock"); rc=$?
[[ $rc -eq 0 && "$json" == *"{"* ]] || fail "list --json: $rc $json"

err=$("$ublkgw" attach nbd://127.0.0.1:1/x --socket "$sock" 2>&1 >/dev/null); rc=$?
[[ $rc -eq 3 ]] || fail "attach without ublk exited $rc, want 3: $err"
grep -q "ublk_drv" <<<"$err" || fail "attach error does not name ublk_drv: $err"

err=$("$ublkgw" attach http://x/y --socket "$sock" 2>&1 >/dev/null); rc=$?
[[ $rc -eq 2 ]] || fail "attach of a bad URI exited $rc, want 2: $err"
grep -q "unknown scheme 'http'" <<<"$err" || fail "bad URI error unclear: $err"

err=$("$ublkgw" attach nbd://h/x --depth 0 --socket "$sock" 2>&1 >/dev/null); rc=$?
[[ $rc -eq 2 ]] || fail "depth 0 exited $rc, want 2"

err=$("$ublkgw" detach /dev/ublkb9 --socket "$sock" 2>&1 >/dev/null); rc=$?
[[ $rc -eq 7 ]] || fail "detach of an unknown device exited $rc, want 7: $err"

kill -TERM "$daemon"; wait "$daemon"; rc=$?
daemon=
[[ $rc -eq 0 ]] || fail "the daemon exited $rc on SIGTERM"
[[ ! -e "$sock" ]] || fail "the socket was left behind"

if [[ $failures -gt 0 ]]; then cat "$dir/daemon.log"; echo "$failures check(s) failed"; exit 1; fi
echo "daemon on a host without ublk: all checks passed"
