#!/usr/bin/env bash
# Checks the layer rules of DESIGN.md on the includes of gateway/. The build
# already refuses a project header from a layer a library does not link (see
# cmake/UblkgwLayer.cmake); this also covers relative paths and the system
# headers a layer must not see (nbd/ never sees io_uring or ublk).
# Usage: layering_test.sh GATEWAY_DIR
set -u
gw=${1:?usage: layering_test.sh GATEWAY_DIR}

# layer: the project layers it may include (besides itself)
declare -A allowed=(
  [base]=""
  [ublk]="base"
  [nbd]="base"
  [engine]="base ublk nbd"
  [control]="base ublk nbd engine proto"
  [cli]="base ublk nbd proto"
)
# layer: system headers (regex) it must not include
declare -A forbidden_system=(
  [nbd]='liburing|linux/io_uring|ublk'
  [ublk]='nbd'
  [cli]='liburing'
)

status=0
for dir in "$gw"/*/; do
  layer=$(basename "$dir")
  if [[ -z "${allowed[$layer]+set}" ]]; then
    echo "FAIL: gateway/$layer is not a known layer: add it to $0 and DESIGN.md's table"
    status=1
    continue
  fi
  while IFS=: read -r file line text; do
    inc=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]([^>"]+)[>"].*/\1/' <<<"$text")
    rel=${file#"$gw"/}
    if [[ "$inc" == ../* ]]; then
      echo "FAIL: $rel:$line includes by relative path: $inc"
      status=1
      continue
    fi
    top=${inc%%/*}
    if [[ "$inc" == */* && -d "$gw/$top" && "$top" != "$layer" ]]; then
      if [[ " ${allowed[$layer]} " != *" $top "* ]]; then
        echo "FAIL: $rel:$line: layer '$layer' may not include '$inc' (layer '$top')"
        status=1
      fi
    fi
    pattern=${forbidden_system[$layer]:-}
    if [[ -n "$pattern" && "$text" == *"<"* ]] && grep -qE "$pattern" <<<"$inc"; then
      echo "FAIL: $rel:$line: layer '$layer' may not include <$inc>"
      status=1
    fi
  done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include' "$dir" --include='*.h' --include='*.cc')
done
[[ $status -eq 0 ]] && echo "layering: all includes follow the layer rules"
exit $status
