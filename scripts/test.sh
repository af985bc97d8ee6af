#!/usr/bin/env bash
# Runs every test of ublkgw: installs what is missing (Debian packages),
# builds with AddressSanitizer and UndefinedBehaviorSanitizer, and runs the
# whole ctest suite (unit, integration and guest tiers). Guest tests fetch
# Debian kernels into /var/cache/ublkgw (outside the checkout) on first use.
#
# Usage: scripts/test.sh [CTEST ARGS...]     e.g. scripts/test.sh -L unit
# Environment: UBLKGW_BUILD_DIR (default: build/asan in the checkout)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh
build=${UBLKGW_BUILD_DIR:-build/asan}
cmake -S . -B "$build" -G Ninja -DUBLKGW_SANITIZE=ON >/dev/null
cmake --build "$build"
cd "$build"
exec ctest --output-on-failure -j2 "$@"
