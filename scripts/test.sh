#!/usr/bin/env bash
# Runs every test of ublkgw: installs what is missing (Debian packages),
# builds the libFuzzer harnesses with clang, builds everything else with
# AddressSanitizer and UndefinedBehaviorSanitizer (and once more as
# Release), and runs the whole ctest suite: unit, integration (real NBD
# servers on loopback), fuzz (bounded runs) and guest (QEMU with Debian's
# kernels, fetched into /var/cache/ublkgw outside the checkout on first
# use, and the kernel carrying kernel/patches, built by kernel/build.sh and
# cached there; the guest suites that feed the daemon hostile servers,
# failures and kills run the sanitizer build, the others the Release
# build). Compiled objects are cached there too (ccache), so a second run
# builds only what changed.
#
# Usage: scripts/test.sh [CTEST ARGS...]     e.g. scripts/test.sh -L unit
# Environment: UBLKGW_BUILD_DIR (default: build/ in the checkout; the
#              sanitizer build goes to asan/ under it, the fuzzers to fuzz/),
#              CCACHE_DIR (default: /var/cache/ublkgw/ccache)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Each step says when it starts, in seconds since this script did, so a
# slow CI run shows where its time went.
start=$SECONDS
step() { echo "==> [$((SECONDS - start)) s] $*"; }

scripts/install-deps.sh
root=${UBLKGW_BUILD_DIR:-build}
mkdir -p "$root"
abs_root=$(cd "$root" && pwd)

# A compiler cache outside the checkout, as for the guests' kernels: a run
# after a small change compiles only what it touched, in whatever clone.
# Paths under the checkout are hashed relative to it (CCACHE_BASEDIR), and
# the working directory is left out of the hash, so a clean clone elsewhere
# hits too (its debug info then names the first clone's build directory).
# The coverage build hits only in the same build directory (ccache hashes
# where an object's .gcda goes), and its .gcno files name their sources
# relative to it, which coverage-report.sh reads.
cache=()
if command -v ccache >/dev/null; then
  export CCACHE_DIR=${CCACHE_DIR:-/var/cache/ublkgw/ccache}
  export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-4G}
  cache=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  ccache --zero-stats >/dev/null
fi

step "building the fuzzers (clang) in $root/fuzz"
CC=clang CXX=clang++ cmake -S . -B "$root/fuzz" -G Ninja -DUBLKGW_FUZZ=ON -DUBLKGW_WERROR=ON \
  "${cache[@]}" >/dev/null
cmake --build "$root/fuzz" --target reply_fuzzer handshake_fuzzer fuzz_seeds

# Every build type the README documents compiles without a warning: the
# release build (what the demo and packages ship) with its tests too, and
# the development build (RelWithDebInfo, sanitizers) that runs them.
step "building the release configuration, tests included, in $root/release"
cmake -S . -B "$root/release" -G Ninja -DCMAKE_BUILD_TYPE=Release -DUBLKGW_WERROR=ON \
  "${cache[@]}" >/dev/null
cmake --build "$root/release"

step "building with ASan+UBSan in $root/asan"
# Guest suites not marked SANITIZED (tests/guest/CMakeLists.txt) run the
# release build's binaries: what ships, and faster in a TCG guest.
cmake -S . -B "$root/asan" -G Ninja -DUBLKGW_SANITIZE=ON -DUBLKGW_WERROR=ON \
  -DUBLKGW_FUZZ_DIR="$abs_root/fuzz/tests/fuzz" -DUBLKGW_GUEST_RELEASE_DIR="$abs_root/release" \
  "${cache[@]}" >/dev/null
cmake --build "$root/asan"
if [[ ${#cache[@]} -gt 0 ]]; then
  step "compiler cache ($CCACHE_DIR): $(ccache --print-stats | awk -F'\t' '
    $1 == "direct_cache_hit" || $1 == "preprocessed_cache_hit" { hits += $2 }
    $1 == "cache_miss" { misses = $2 }
    END { printf "%d hits, %d misses", hits, misses }')"
fi

step "line coverage of engine/ and ublk/ from the host unit tests, in $root/coverage"
cmake -S . -B "$root/coverage" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DUBLKGW_COVERAGE=ON \
  "${cache[@]}" >/dev/null
cmake --build "$root/coverage" --target engine_test ublk_test
find "$root/coverage" -name '*.gcda' -delete
"$root/coverage/tests/engine_test" >/dev/null 2>&1 || echo "coverage: engine_test failed (the ASan run below reports it)"
"$root/coverage/tests/ublk_test" >/dev/null 2>&1 || echo "coverage: ublk_test failed (the ASan run below reports it)"
scripts/coverage-report.sh "$root/coverage"

step "running the tests (ctest -j2)"
cd "$root/asan"
exec ctest --output-on-failure -j2 "$@"
