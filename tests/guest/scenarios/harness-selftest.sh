#!/bin/sh
# Guest scenario used by harness_test.sh to check run-guest.sh itself.
# Args: exit CODE  - write /out/hello.txt, then exit CODE
#       hang       - never finish (the harness must time out)
. /lib/ublkgw/guest-lib.sh
case "$1" in
  exit)
    echo "hello from $(uname -r)" >/out/hello.txt
    mkdir -p /out/sub && echo nested >/out/sub/file.txt
    exit "$2"
    ;;
  hang)
    while :; do sleep 1; done
    ;;
esac
fail "unknown mode $1"
