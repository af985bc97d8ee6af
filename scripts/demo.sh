#!/usr/bin/env bash
# The main job of ublkgw, end to end: an NBD export (nbdkit) attached as
# /dev/ublkbN by ublkgwd, formatted ext4, filled with files, detached,
# attached again and verified (scripts/demo-steps.sh). On a host without
# ublk (Debian 12's kernels have none) it does the same inside a QEMU guest
# running Debian sid's current kernel, and says so first.
#
# Usage: scripts/demo.sh          (as root)
# Environment: UBLKGW_BUILD_DIR (default: build/ in the checkout)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing what is missing (Debian packages)"
scripts/install-deps.sh
build=${UBLKGW_BUILD_DIR:-build}/release
step "building ublkgw in $build"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DUBLKGW_BUILD_TESTS=OFF >/dev/null
cmake --build "$build"
bins=("$build/gateway/cli/ublkgw" "$build/gateway/control/ublkgwd")

if [[ -e /dev/ublk-control ]] || modprobe ublk_drv 2>/dev/null; then
  step "this host has ublk: running the demo here"
  PATH="$build/gateway/cli:$build/gateway/control:$PATH" exec scripts/demo-steps.sh
fi

step "this host's kernel ($(uname -r)) has no ublk driver: running the demo inside a QEMU guest on Debian sid's kernel"
plugin=/usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-memory-plugin.so
exec tests/guest/run-guest.sh --kernel sid --scenario scripts/demo-steps.sh --mem 1536 \
  --bin "${bins[0]}" --bin "${bins[1]}" --module ublk_drv --tool nbdkit --tool mkfs.ext4 \
  --file "$plugin:$plugin" --out "${TMPDIR:-/tmp}/ublkgw-demo"
