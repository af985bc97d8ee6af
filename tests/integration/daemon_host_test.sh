#!/usr/bin/env bash
# ublkgwd and the CLI on a host without ublk (the host kernel here has
# none): the API serves, validates requests, and refuses to attach with the
# reason; no daemon -> a clear hint. Standard gRPC health and reflection,
# daemon-info, metrics, a recorded volume shown as restoring, the socket's
# group. Usage: daemon_host_test.sh BIN_DIR GRPC_PROBE
set -u
bin=${1:?usage: daemon_host_test.sh BIN_DIR GRPC_PROBE}
probe=${2:?usage: daemon_host_test.sh BIN_DIR GRPC_PROBE}
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

# A volume recorded by an earlier daemon: this one must try to restore it.
mkdir -p "$dir/state"
cat >"$dir/state/state.json" <<'JSON'
{"format": 1, "attachments": [{"device_id": 4, "request": {"uri": "nbd://127.0.0.1:1/recorded", "queues": 2}}]}
JSON

start_daemon() {
  "$ublkgwd" --socket "$sock" --control-device "$dir/no-ublk-control" --state-dir "$dir/state" \
    "$@" 2>"$dir/daemon.log" &
  daemon=$!
  for _ in $(seq 200); do [[ -S "$sock" ]] && grep -q "serving on" "$dir/daemon.log" && break; sleep 0.05; done
  [[ -S "$sock" ]] || { cat "$dir/daemon.log"; fail "the daemon made no socket"; exit 1; }
}
start_daemon --metrics-listen 127.0.0.1:0
mode=$(stat -c %a "$sock")
[[ "$mode" == 600 ]] || fail "socket mode is $mode, want 600"

# A second daemon on the same socket or state directory is refused, and
# leaves the first one serving.
err=$("$ublkgwd" --socket "$sock" --state-dir "$dir/other-state" 2>&1); rc=$?
[[ $rc -eq 1 ]] || fail "a second daemon on the same socket exited $rc, want 1"
grep -q "another ublkgwd serves on $sock" <<<"$err" || fail "second daemon (socket): $err"
err=$("$ublkgwd" --socket "$dir/other.sock" --state-dir "$dir/state" 2>&1); rc=$?
[[ $rc -eq 1 ]] || fail "a second daemon on the same state directory exited $rc, want 1"
grep -q "another ublkgwd uses the state directory" <<<"$err" || fail "second daemon (state): $err"
[[ -S "$sock" ]] || fail "the second daemon removed the first one's socket"

# Standard gRPC services.
out=$("$probe" "unix:$sock" health 2>&1)
[[ "$out" == SERVING ]] || fail "health is '$out', want SERVING"
out=$("$probe" "unix:$sock" services 2>&1)
grep -qx "ublkgw.v1.Ublkgw" <<<"$out" || fail "reflection does not list ublkgw.v1.Ublkgw: $out"
grep -qx "grpc.health.v1.Health" <<<"$out" || fail "reflection does not list the health service: $out"
out=$("$probe" "unix:$sock" describe ublkgw.v1.Ublkgw 2>&1)
grep -q "ublkgw/v1/ublkgw.proto" <<<"$out" || fail "reflection does not describe the service: $out"

json=$("$ublkgw" daemon-info --json --socket "$sock"); rc=$?
[[ $rc -eq 0 ]] || fail "daemon-info exited $rc"
grep -q '"ublk_available": false' <<<"$json" || fail "daemon-info does not say ublk is missing: $json"
grep -q 'modprobe ublk_drv' <<<"$json" || fail "daemon-info does not name the fix: $json"
grep -q "\"state_dir\": \"$dir/state\"" <<<"$json" || fail "daemon-info state_dir: $json"
grep -q '"version": "[0-9]' <<<"$json" || fail "daemon-info has no version: $json"

# The recorded volume shows as restoring, with the reason.
out=$("$ublkgw" list --socket "$sock" 2>&1)
grep -q "/dev/ublkb4 .* restoring .* nbd://127.0.0.1:1/recorded" <<<"$out" || fail "recorded volume not listed as restoring: $out"
grep -q "ublk_drv" <<<"$out" || fail "restoring volume does not say why: $out"

# Metrics: the port chosen is logged; every sample line parses.
port=$(sed -n 's|.*metrics on http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$dir/daemon.log" | head -1)
[[ -n "$port" ]] || fail "the metrics port is not logged"
metrics=$(curl -sf "http://127.0.0.1:$port/metrics"); rc=$?
[[ $rc -eq 0 ]] || fail "metrics scrape failed ($rc)"
grep -qx 'ublkgw_volumes 1' <<<"$metrics" || fail "ublkgw_volumes is not 1: $metrics"
grep -qx 'ublkgw_volume_up{device="/dev/ublkb4",uri="nbd://127.0.0.1:1/recorded"} 0' <<<"$metrics" \
  || fail "a restoring volume is not down in the metrics"
bad=$(grep -v '^#' <<<"$metrics" | grep -Ev '^[a-z_]+(\{[^}]*\})? [0-9.e+-]+$' | head -3)
[[ -z "$bad" ]] || fail "metrics lines that do not parse: $bad"

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
for cmd in "stats 9" "stats 9 --watch --count 1" "resize /dev/ublkb9"; do
  err=$("$ublkgw" $cmd --socket "$sock" 2>&1 >/dev/null); rc=$?
  [[ $rc -eq 7 ]] || fail "'$cmd' of an unknown device exited $rc, want 7: $err"
done
err=$("$ublkgw" stats sda --socket "$sock" 2>&1 >/dev/null); rc=$?
[[ $rc -eq 2 ]] || fail "stats of a non-ublk name exited $rc, want 2: $err"
err=$("$ublkgw" resize 4 --size 3X --socket "$sock" 2>&1 >/dev/null); rc=$?
[[ $rc -eq 2 ]] || fail "resize with a bad size exited $rc, want 2: $err"
err=$("$ublkgw" resize 4 --socket "$sock" 2>&1 >/dev/null); rc=$?
[[ $rc -eq 3 ]] || fail "resize of a restoring volume exited $rc, want 3: $err"
json=$("$ublkgw" stats 4 --json --socket "$sock"); rc=$?
[[ $rc -eq 0 ]] || fail "stats of a restoring volume exited $rc"
grep -q '"health": "HEALTH_RESTORING"' <<<"$json" || fail "stats --json health: $json"

# Detaching the restoring volume forgets its record.
"$ublkgw" detach /dev/ublkb4 --socket "$sock" || fail "detach of the restoring volume failed"
grep -q 'recorded' "$dir/state/state.json" && fail "the detached volume is still recorded"
out=$("$ublkgw" list --socket "$sock" 2>&1); rc=$?
[[ $rc -eq 0 ]] || fail "list exited $rc: $out"
grep -q "no volumes attached" <<<"$out" || fail "empty list not said: $out"

kill -TERM "$daemon"; wait "$daemon"; rc=$?
daemon=
[[ $rc -eq 0 ]] || fail "the daemon exited $rc on SIGTERM"
[[ ! -e "$sock" ]] || fail "the socket was left behind"

# --socket-group: 0660 for the group; an unknown group is refused.
group=$(id -gn)
start_daemon --socket-group "$group"
mode=$(stat -c '%a %G' "$sock")
[[ "$mode" == "660 $group" ]] || fail "socket with --socket-group is '$mode', want '660 $group'"
kill -TERM "$daemon"; wait "$daemon"; daemon=
err=$("$ublkgwd" --socket "$sock" --state-dir '' --socket-group no-such-group-ublkgw 2>&1); rc=$?
[[ $rc -eq 2 ]] || fail "an unknown --socket-group exited $rc, want 2"
grep -q "no group named 'no-such-group-ublkgw'" <<<"$err" || fail "unknown group not named: $err"
# Plaintext TCP is refused at start-up.
err=$("$ublkgwd" --socket '' --state-dir '' --listen 127.0.0.1:0 2>&1); rc=$?
[[ $rc -eq 2 ]] || fail "plaintext --listen exited $rc, want 2"
grep -q "without mutual TLS" <<<"$err" || fail "plaintext refusal unclear: $err"

if [[ $failures -gt 0 ]]; then cat "$dir/daemon.log"; echo "$failures check(s) failed"; exit 1; fi
echo "daemon on a host without ublk: all checks passed"
