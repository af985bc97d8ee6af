# Sourced by the benchmark and profile scripts: sets `cache` to the CMake
# arguments that compile through the tests' compiler cache (ccache, in
# /var/cache/ublkgw/ccache unless CCACHE_DIR says otherwise), or to nothing
# where ccache is missing. scripts/test.sh sets up its own, with the
# options a clean clone needs to hit it.
cache=()
if command -v ccache >/dev/null; then
  export CCACHE_DIR=${CCACHE_DIR:-/var/cache/ublkgw/ccache}
  cache=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
