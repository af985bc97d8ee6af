#!/usr/bin/env bash
# The API over TCP with mutual TLS, on loopback: a client whose certificate
# the daemon's client CA signed is served; one without a certificate, or
# with one from another CA, is refused; so is a client that does not trust
# the daemon's CA. Certificates are made here with openssl.
# Usage: daemon_tls_test.sh BIN_DIR GRPC_PROBE
set -u
bin=${1:?usage: daemon_tls_test.sh BIN_DIR GRPC_PROBE}
probe=${2:?usage: daemon_tls_test.sh BIN_DIR GRPC_PROBE}
ublkgw=$bin/cli/ublkgw
ublkgwd=$bin/control/ublkgwd
dir=$(mktemp -d)
failures=0
failed=()
fail() { echo "FAIL: $*"; failures=$((failures + 1)); failed+=("$*"); }
cleanup() { [[ -n "${daemon:-}" ]] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
command -v openssl >/dev/null || { echo "SKIP: openssl is not installed"; exit 77; }

# A CA, and a certificate it signs: make_ca NAME; make_cert NAME CA EXT.
make_ca() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" \
    -keyout "$dir/$1.key" -out "$dir/$1.pem" 2>/dev/null
}
make_cert() {
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" \
    -keyout "$dir/$1.key" -out "$dir/$1.csr" 2>/dev/null
  printf '%s\n' "$3" >"$dir/$1.ext"
  openssl x509 -req -in "$dir/$1.csr" -CA "$dir/$2.pem" -CAkey "$dir/$2.key" \
    -CAcreateserial -days 2 -extfile "$dir/$1.ext" -out "$dir/$1.pem" 2>/dev/null
}
make_ca server-ca
make_ca client-ca
make_ca other-ca
make_cert server server-ca "subjectAltName=IP:127.0.0.1,DNS:localhost"
make_cert client client-ca "extendedKeyUsage=clientAuth"
make_cert intruder other-ca "extendedKeyUsage=clientAuth"
for f in server client intruder; do [[ -s "$dir/$f.pem" ]] || { echo "openssl made no $f.pem"; exit 1; }; done

"$ublkgwd" --socket '' --state-dir '' --control-device "$dir/no-ublk-control" \
  --listen 127.0.0.1:0 --tls-cert "$dir/server.pem" --tls-key "$dir/server.key" \
  --tls-client-ca "$dir/client-ca.pem" 2>"$dir/daemon.log" &
daemon=$!
port=
for _ in $(seq 200); do
  port=$(sed -n 's|.*serving on 127.0.0.1:\([0-9]*\) (mutual TLS).*|\1|p' "$dir/daemon.log" | head -1)
  [[ -n "$port" ]] && break
  sleep 0.05
done
[[ -n "$port" ]] || { cat "$dir/daemon.log"; fail "the daemon did not report its TLS port"; exit 1; }
target=127.0.0.1:$port

# The right client certificate: served (the probe and the CLI).
out=$("$probe" "$target" health --tls-ca "$dir/server-ca.pem" \
  --tls-cert "$dir/client.pem" --tls-key "$dir/client.key" 2>&1)
[[ "$out" == SERVING ]] || fail "a client with the right certificate got '$out'"
tls=(--server "$target" --tls-ca "$dir/server-ca.pem" --tls-cert "$dir/client.pem" --tls-key "$dir/client.key")
json=$("$ublkgw" daemon-info --json "${tls[@]}" 2>&1); rc=$?
[[ $rc -eq 0 ]] || fail "ublkgw daemon-info over TLS exited $rc: $json"
grep -q "127.0.0.1:$port (mutual TLS)" <<<"$json" || fail "daemon-info does not list the TLS listener: $json"
err=$("$ublkgw" attach nbd://127.0.0.1:1/x "${tls[@]}" 2>&1 >/dev/null); rc=$?
[[ $rc -eq 3 ]] || fail "attach over TLS without ublk exited $rc, want 3: $err"

# No client certificate: refused.
out=$("$probe" "$target" health --tls-ca "$dir/server-ca.pem" 2>&1); rc=$?
[[ $rc -ne 0 && "$out" != SERVING ]] || fail "a client without a certificate was served"
# A certificate from another CA: refused.
out=$("$probe" "$target" health --tls-ca "$dir/server-ca.pem" \
  --tls-cert "$dir/intruder.pem" --tls-key "$dir/intruder.key" 2>&1); rc=$?
[[ $rc -ne 0 && "$out" != SERVING ]] || fail "a client with another CA's certificate was served"
err=$("$ublkgw" list --server "$target" --tls-ca "$dir/server-ca.pem" \
  --tls-cert "$dir/intruder.pem" --tls-key "$dir/intruder.key" 2>&1 >/dev/null); rc=$?
[[ $rc -eq 6 ]] || fail "the CLI with another CA's certificate exited $rc, want 6"
grep -q "mutual TLS" <<<"$err" || fail "the refusal does not point at TLS: $err"
# A client that does not trust the daemon's CA: refused too.
out=$("$probe" "$target" health --tls-ca "$dir/other-ca.pem" \
  --tls-cert "$dir/client.pem" --tls-key "$dir/client.key" 2>&1); rc=$?
[[ $rc -ne 0 && "$out" != SERVING ]] || fail "a client that does not trust the server was served"
# Plaintext to the TLS port: refused.
out=$("$probe" "$target" health 2>&1); rc=$?
[[ $rc -ne 0 ]] || fail "a plaintext client was served on the TLS port"
# The CLI insists on all three files.
err=$("$ublkgw" list --server "$target" 2>&1 >/dev/null); rc=$?
[[ $rc -eq 2 ]] || fail "--server without TLS files exited $rc, want 2"

if [[ $failures -gt 0 ]]; then
  cat "$dir/daemon.log"
  printf 'FAILED: %s\n' "${failed[@]}"  # again after the log, where a truncated report shows them
  echo "$failures check(s) failed"
  exit 1
fi
echo "mutual TLS: all checks passed"
