#!/usr/bin/env bash
# Prints the line coverage of gateway/engine/ and gateway/ublk/ from a
# coverage build (-DUBLKGW_COVERAGE=ON) whose host tests have run: per
# file, then per directory. Sources the tests never reached count as 0%.
# Usage: scripts/coverage-report.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: coverage-report.sh BUILD_DIR}" && pwd)  # gcov runs elsewhere
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
find "$build/gateway" -name '*.gcno' | while read -r gcno; do
  (cd "$tmp" && gcov -n "$gcno" 2>/dev/null) || true
done >"$tmp/gcov.txt"
python3 - "$tmp/gcov.txt" "$src" <<'PY'
import re, sys
text, src = open(sys.argv[1]).read(), sys.argv[2]
files = {}
for name, pct, lines in re.findall(r"File '([^']+)'\nLines executed:([0-9.]+)% of (\d+)", text):
    # Absolute, or relative to the build directory the object was compiled
    # in (a compiler cache makes paths relative to the checkout).
    m = re.search(r"(?:^|/)(gateway/(?:engine|ublk)/[^/]+\.cc)$", name)
    if not m:
        continue
    rel = m.group(1)
    n = int(lines)
    files[rel] = (round(float(pct) * n / 100), n)  # each source once: its own object
if not files:
    print(f"coverage: no gcov data for gateway/engine or gateway/ublk (was the build made "
          f"with -DUBLKGW_COVERAGE=ON, and did its tests run?)", file=sys.stderr)
dirs = {}
for rel in sorted(files):
    hit, n = files[rel]
    print(f"  {rel:45s} {100.0 * hit / max(n, 1):5.1f}% of {n} lines")
    d = rel.rsplit("/", 1)[0]
    h, t = dirs.get(d, (0, 0))
    dirs[d] = (h + hit, t + n)
for d, (h, t) in sorted(dirs.items()):
    print(f"line coverage of {d}/ from the host tests: {100.0 * h / max(t, 1):.1f}% ({h} of {t} lines)")
PY
