#!/usr/bin/env bash
# The ublkgw binary as a user meets it on a host without ublk: --help teaches,
# a bad command line exits 2, a missing driver exits 3 with the fix.
# Usage: ublkgw_cli_test.sh PATH/TO/ublkgw
set -u
bin=${1:?usage: ublkgw_cli_test.sh PATH/TO/ublkgw}
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

out=$("$bin" --help 2>&1); rc=$?
[[ $rc -eq 0 ]] || fail "--help exited $rc"
grep -q 'features' <<<"$out" || fail "--help does not list 'features'"
grep -q 'Exit codes' <<<"$out" || fail "--help does not explain exit codes"

out=$("$bin" features --help 2>&1); rc=$?
[[ $rc -eq 0 ]] || fail "features --help exited $rc"
grep -q -- '--json' <<<"$out" || fail "features --help does not mention --json"
grep -q 'Examples' <<<"$out" || fail "features --help has no examples"

# Every command teaches: its --help has examples and every client command
# offers --json.
for cmd in attach detach list stats resize daemon-info info features; do
  out=$("$bin" $cmd --help 2>&1); rc=$?
  [[ $rc -eq 0 ]] || fail "$cmd --help exited $rc"
  grep -q 'Examples' <<<"$out" || fail "$cmd --help has no examples"
  grep -q -- '--json' <<<"$out" || fail "$cmd --help has no --json"
done
out=$("$bin" stats --help 2>&1)
grep -q -- '--watch' <<<"$out" || fail "stats --help does not mention --watch"

"$bin" no-such-command >/dev/null 2>&1; rc=$?
[[ $rc -eq 2 ]] || fail "an unknown command exited $rc, want 2"

"$bin" >/dev/null 2>&1; rc=$?
[[ $rc -eq 2 ]] || fail "no command exited $rc, want 2"

# Timeouts are seconds from 0 to a day; nothing else passes for one.
for bad in nan -1 86401 10s; do
  err=$("$bin" attach nbd://127.0.0.1/x --io-timeout "$bad" --socket /nonexistent.sock 2>&1); rc=$?
  [[ $rc -eq 2 ]] || fail "--io-timeout $bad exited $rc, want 2"
  grep -q "not '$bad'" <<<"$err" || fail "--io-timeout $bad: the error does not name it: $err"
done
err=$("$bin" attach nbd://127.0.0.1/x --reconnect-deadline nan --socket /nonexistent.sock 2>&1)
[[ $? -eq 2 ]] || fail "--reconnect-deadline nan was accepted: $err"

err=$("$bin" features --device /nonexistent/ublk-control 2>&1 >/dev/null); rc=$?
[[ $rc -eq 3 ]] || fail "missing control device exited $rc, want 3"
grep -q 'ublk_drv' <<<"$err" || fail "missing-device error does not name ublk_drv: $err"

json=$("$bin" features --json --device /nonexistent/ublk-control 2>/dev/null); rc=$?
[[ $rc -eq 3 ]] || fail "missing control device with --json exited $rc, want 3"
grep -q '"code": "FAILED_PRECONDITION"' <<<"$json" || fail "--json error is not JSON: $json"

"$bin" --version | grep -q '^ublkgw ' || fail "--version does not print the version"

if [[ $failures -gt 0 ]]; then echo "$failures check(s) failed"; exit 1; fi
echo "all checks passed"
