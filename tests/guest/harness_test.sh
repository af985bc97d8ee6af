#!/usr/bin/env bash
# Checks run-guest.sh itself: the scenario's exit status comes back (failure
# and skip alike), files written to /out come back, the kernel version is
# printed, and a guest that never finishes is stopped at the timeout.
# Usage: harness_test.sh SUITE OUT_DIR
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
suite=${1:?usage: harness_test.sh SUITE OUT_DIR}
out=${2:?usage: harness_test.sh SUITE OUT_DIR}
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

log=$("$here/run-guest.sh" --kernel "$suite" --scenario "$here/scenarios/harness-selftest.sh" \
  --out "$out/exit" -- exit 42 2>&1); rc=$?
[[ $rc -eq 42 ]] || fail "a scenario that exits 42 gave $rc"
grep -q '^hello from ' "$out/exit/files/hello.txt" 2>/dev/null || fail "/out/hello.txt did not come back"
grep -q '^nested$' "$out/exit/files/sub/file.txt" 2>/dev/null || fail "/out/sub/file.txt did not come back"
kver=$(cat "$out/exit/files/hello.txt" 2>/dev/null | sed 's/^hello from //')
grep -q "UBLKGW-GUEST-KERNEL: $kver" <<<"$log" || fail "the run did not print the kernel version"
grep -q "exited 42 on kernel $kver" <<<"$log" || fail "the summary line does not name status and kernel"

log=$("$here/run-guest.sh" --kernel "$suite" --scenario "$here/scenarios/harness-selftest.sh" \
  --out "$out/hang" --timeout 12 -- hang 2>&1); rc=$?
[[ $rc -eq 1 ]] || fail "a hanging scenario gave $rc, want 1"
grep -q 'TIMEOUT' <<<"$log" || fail "a hanging scenario was not reported as a timeout"
[[ -s "$out/hang/console.log" ]] || fail "the console log of a failed run was not kept"

if [[ $failures -gt 0 ]]; then
  echo "$failures check(s) failed; last run's output:"; echo "$log"
  exit 1
fi
echo "harness: exit status, files, kernel version and timeout all check out"
