#!/usr/bin/env bash
# The main job of ublkgw, end to end. Today (issue 2) that is the
# foundation: build ublkgw and ask the kernel's ublk driver what it can do.
# On a host without ublk (Debian 12's kernels have none) it does so inside a
# QEMU guest running Debian sid's current kernel, and says so first.
#
# Usage: scripts/demo.sh
# Environment: UBLKGW_BUILD_DIR (default: build/release in the checkout)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing what is missing (Debian packages)"
scripts/install-deps.sh
build=${UBLKGW_BUILD_DIR:-build/release}
step "building ublkgw in $build"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DUBLKGW_BUILD_TESTS=OFF >/dev/null
cmake --build "$build"

if [[ -e /dev/ublk-control ]]; then
  step "this host has ublk: asking its driver"
  "$build/gateway/cli/ublkgw" features
  exit
fi

step "this host's kernel ($(uname -r)) has no ublk driver: running inside a QEMU guest on Debian sid's kernel"
tests/guest/run-guest.sh --kernel sid --scenario tests/guest/scenarios/features.sh \
  --bin "$build/gateway/cli/ublkgw" --module ublk_drv --out "${TMPDIR:-/tmp}/ublkgw-demo" \
  -- --expect-all 0x48  # at least ioctl-encoded commands and user recovery
