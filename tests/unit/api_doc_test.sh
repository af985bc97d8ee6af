#!/usr/bin/env bash
# docs/API.md matches the proto: every RPC of ublkgw.v1.Ublkgw has its
# section, with the same request and response types, and no section names
# an RPC the proto lacks; every Health value is explained.
# Usage: api_doc_test.sh SOURCE_DIR
set -u
src=${1:?usage: api_doc_test.sh SOURCE_DIR}
proto=$src/proto/ublkgw/v1/ublkgw.proto
doc=$src/docs/API.md
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

rpcs=$(sed -n 's/^ *rpc \([A-Za-z]*\)(\([A-Za-z]*\)) returns (\(stream \)\{0,1\}\([A-Za-z]*\));.*/\1(\2) -> \3\4/p' "$proto")
[[ -n "$rpcs" ]] || fail "no RPCs found in $proto"
while IFS= read -r rpc; do
  grep -qxF "### $rpc" "$doc" || fail "docs/API.md has no section '### $rpc'"
done <<<"$rpcs"
while IFS= read -r heading; do
  grep -qxF "${heading#\#\#\# }" <<<"$rpcs" || fail "docs/API.md documents '$heading', which the proto lacks"
done < <(grep '^### [A-Za-z]*(' "$doc")
for value in $(sed -n 's/^ *\(HEALTH_[A-Z]*\) = [1-9].*/\1/p' "$proto"); do
  grep -q "$value" "$doc" || fail "docs/API.md does not explain $value"
done

if [[ $failures -gt 0 ]]; then echo "$failures check(s) failed"; exit 1; fi
echo "docs/API.md covers all $(wc -l <<<"$rpcs") RPCs"
