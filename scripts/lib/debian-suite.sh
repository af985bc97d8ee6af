# Sourced, not run: packages from a newer Debian suite (sid, trixie, ...)
# through a private apt configuration, so the machine's own package set is
# never mixed with them.
#
# The mirror is the one this machine's apt is configured with: its URI is read
# from /etc/apt/sources.list.d/debian.sources (or sources.list) at run time.
# No mirror name is written into any file of the project.
#
# Before calling anything below, set:
#   suite_aptroot  a directory of the cache that holds this suite's apt state
#                  (lists, downloads), for example /var/cache/ublkgw/apt-sid

# debian_mirror_uri: prints the machine's Debian mirror URI, or fails saying
# where it looked.
debian_mirror_uri() {
  local uri=""
  if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
    # The first URIs: line that is not the security archive.
    uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i !~ /security/) {print $i; exit}}' \
      /etc/apt/sources.list.d/debian.sources)
  fi
  if [[ -z "$uri" && -r /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' \
      /etc/apt/sources.list)
  fi
  if [[ -z "$uri" ]]; then
    echo "cannot find the Debian mirror in this machine's apt configuration" >&2
    echo "  (looked for a URIs: line in /etc/apt/sources.list.d/debian.sources and a deb line in /etc/apt/sources.list)" >&2
    return 1
  fi
  echo "$uri"
}

suite_apt_get() {
  apt-get -q \
    -o Dir::Etc="$suite_aptroot/etc" \
    -o Dir::Etc::sourcelist="$suite_aptroot/etc/sources.list" \
    -o Dir::Etc::sourceparts="-" \
    -o Dir::Etc::preferencesparts="-" \
    -o Dir::State="$suite_aptroot/state" \
    -o Dir::Cache="$suite_aptroot/cache" \
    -o Debug::NoLocking=1 \
    -o APT::Get::List-Cleanup=0 \
    "$@"
}

suite_apt_cache() {
  apt-cache \
    -o Dir::Etc="$suite_aptroot/etc" \
    -o Dir::Etc::sourcelist="$suite_aptroot/etc/sources.list" \
    -o Dir::Etc::sourceparts="-" \
    -o Dir::State="$suite_aptroot/state" \
    -o Dir::Cache="$suite_aptroot/cache" \
    "$@"
}

# suite_update SUITE: writes the private sources.list for SUITE and updates
# its package list; on failure prints apt's output and fails.
suite_update() {
  local suite=$1 uri
  mkdir -p "$suite_aptroot/etc/apt.conf.d" "$suite_aptroot/etc/preferences.d" \
    "$suite_aptroot/state/lists/partial" "$suite_aptroot/cache/archives/partial"
  uri=$(debian_mirror_uri) || return 1
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" \
    >"$suite_aptroot/etc/sources.list"
  : >"$suite_aptroot/state/status"
  if ! suite_apt_get update >"$suite_aptroot/update.log" 2>&1; then
    cat "$suite_aptroot/update.log" >&2
    echo "apt-get update failed for suite '$suite' (is the mirror reachable?)" >&2
    return 1
  fi
}
