#!/usr/bin/env bash
# Installs every Debian 12 package ublkgw needs to build, test and run its
# guest harness. Idempotent and non-interactive: packages already present are
# not touched, and apt runs only when something is missing.
#
# Usage: scripts/install-deps.sh [--dry-run]
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config git ccache
  # libraries (DESIGN.md: fixed choices)
  liburing-dev
  libprotobuf-dev protobuf-compiler
  libgrpc++-dev protobuf-compiler-grpc
  libgoogle-glog-dev libgflags-dev
  libgtest-dev libgmock-dev
  libabsl-dev libcli11-dev nlohmann-json3-dev
  # fuzzing (libFuzzer)
  clang libclang-rt-14-dev
  # guest harness: QEMU, an initramfs of busybox, kernels from Debian's mirror
  qemu-system-x86 busybox-static cpio xz-utils zstd gzip
  ca-certificates debian-archive-keyring
  # the guests' patched kernel (kernel/build.sh)
  flex bison bc libelf-dev libssl-dev
  # NBD peers and load, used inside the guest and on the host
  nbdkit nbdkit-plugin-dev qemu-utils nbd-server nbd-client fio e2fsprogs
  # network faults inside the guest (ip netns, veth, tc netem)
  iproute2
  # API tests: mutual TLS certificates, metrics scrapes
  openssl curl
  # benchmark report and plots (tests/bench)
  python3 gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${#missing[@]} missing package(s): ${missing[*]}"
if [[ "${1:-}" == "--dry-run" ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: must run as root to install packages (try: sudo $0)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
echo "install-deps: done"
