#!/usr/bin/env bash
# Bounded soak of the webhook on loopback: the release binary on a self-signed certificate and a
# configuration file, h2load posting a captured AdmissionReview at a fixed rate in slices
# (HTTP/2 and HTTP/1.1 in turn), a certificate rotation and a configuration reload during the
# middle slice. Reports errors (must be 0), resident memory at start, middle and end, and the
# latency of every slice, then stops the server with SIGTERM.
#
#   bench/soak.sh [SECONDS] [SLICE_SECONDS]        default: 300 s in 30 s slices
#
# Environment: CLIENTS (10), RPS per client (100), PORT (18443), ADMIN_PORT (18080).
# Needs h2load (apt-get install nghttp2-client), openssl, curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

total="${1:-300}"
slice="${2:-30}"
clients="${CLIENTS:-10}"
rps="${RPS:-100}"
port="${PORT:-18443}"
admin_port="${ADMIN_PORT:-18080}"
fixture=tests/fixtures/admission/pod-create-simple.json
slices=$((total / slice))
if [ "$slices" -lt 3 ]; then
  echo "need at least three slices (SECONDS >= 3 * SLICE_SECONDS)" >&2
  exit 2
fi
for tool in h2load openssl curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 2; }
done

echo "== release build"
nice -n 15 cargo build --release --locked --quiet
bin=target/release/pullthrough

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

account_a=123456789012
account_b=210987654321
printf 'accountId: "%s"\nregion: eu-west-1\n' "$account_a" >"$work/config.yaml"

"$bin" webhook --config "$work/config.yaml" \
  --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin_port" \
  --self-signed-dir "$work/tls" --reload-interval 1s --shutdown-delay 0s \
  >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null

rss() { awk '/^VmRSS/ {print $2 " kB"}' "/proc/$server_pid/status"; }
hwm() { awk '/^VmHWM/ {print $2 " kB"}' "/proc/$server_pid/status"; }
served_cert() {
  openssl s_client -connect "127.0.0.1:$port" -servername localhost </dev/null 2>/dev/null |
    openssl x509 -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2
}
# The image the webhook rewrites the fixture's nginx:1.27 to, read from a real answer.
rewritten_image() {
  curl -fsS -k "https://127.0.0.1:$port/mutate" -H 'content-type: application/json' \
    --data-binary "@$fixture" |
    python3 -c 'import base64, json, sys
r = json.load(sys.stdin)["response"]
ops = json.loads(base64.b64decode(r["patch"]))
print(next(o["value"] for o in ops if o["path"].endswith("/image")))'
}
rotate_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$work/new.key" -out "$work/new.crt" 2>/dev/null
  mv "$work/new.key" "$work/tls/tls.key"
  mv "$work/new.crt" "$work/tls/tls.crt"
}

# Warm up with a few requests so that the start figure is the server's working size.
for _ in $(seq 1 20); do rewritten_image >/dev/null; done
expected_a="$account_a.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27"
expected_b="$account_b.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27"
[ "$(rewritten_image)" = "$expected_a" ] || { echo "wrong answer before the soak" >&2; exit 1; }
cert_before="$(served_cert)"
rss_start="$(rss)"
middle=$((slices / 2 + 1))

echo "== soak: ${total}s in ${slices} slices of ${slice}s, ${clients} connections x ${rps} req/s, body $(wc -c <"$fixture") bytes"
echo "   rotation and reload during slice $middle; RSS at start: $rss_start"
printf '%-5s %-8s %9s %9s %6s %7s %7s %6s %9s %9s %9s  %s\n' \
  slice proto requests ok failed errored timeout non2xx "mean" "sd" "max" "RSS after"
errors=0
declare -A first_mean last_mean
rss_middle=""
for i in $(seq 1 "$slices"); do
  if [ $((i % 2)) -eq 1 ]; then proto=h2; flags=(); else proto=http/1.1; flags=(--h1); fi
  if [ "$i" -eq "$middle" ]; then
    (
      sleep $((slice / 3))
      rotate_cert
      sleep $((slice / 3))
      printf 'accountId: "%s"\nregion: eu-west-1\n' "$account_b" >"$work/config.new"
      mv "$work/config.new" "$work/config.yaml"
    ) &
    changer=$!
  fi
  out="$work/slice-$i.txt"
  nice -n 15 h2load "${flags[@]}" -D "$slice" -c "$clients" --rps "$rps" -m 1 \
    -d "$fixture" -H 'content-type: application/json' \
    "https://127.0.0.1:$port/mutate" >"$out" 2>&1 || true
  if [ "$i" -eq "$middle" ]; then
    wait "$changer"
    rss_middle="$(rss)"
  fi
  read -r requests ok failed errored timeout < <(awk '/^requests:/ {print $6, $8, $10, $12, $14}' "$out")
  read -r s2 s3 s4 s5 < <(awk '/^status codes:/ {print $3, $5, $7, $9}' "$out")
  read -r mean sd max < <(awk '/^time for request:/ {print $6, $7, $5}' "$out")
  non2xx=$(( ${s3:-0} + ${s4:-0} + ${s5:-0} ))
  bad=$(( ${failed:-1} + ${errored:-1} + ${timeout:-1} + non2xx ))
  if [ -z "${requests:-}" ] || [ "${requests:-0}" -eq 0 ] || [ "${ok:-0}" -ne "${s2:-0}" ]; then
    bad=$((bad + 1))
    tail -n 20 "$out" >&2
  fi
  errors=$((errors + bad))
  printf '%-5s %-8s %9s %9s %6s %7s %7s %6s %9s %9s %9s  %s\n' \
    "$i" "$proto" "$requests" "$ok" "$failed" "$errored" "$timeout" "$non2xx" "$mean" "$sd" "$max" "$(rss)"
  first_mean[$proto]="${first_mean[$proto]:-$mean}"
  last_mean[$proto]="$mean"
  # The answers stay correct: the configuration in force decides the account.
  got="$(rewritten_image)"
  if [ "$i" -lt "$middle" ] && [ "$got" != "$expected_a" ]; then errors=$((errors + 1)); echo "slice $i: wrong image $got" >&2; fi
  if [ "$i" -ge "$middle" ] && [ "$got" != "$expected_b" ]; then errors=$((errors + 1)); echo "slice $i: wrong image $got" >&2; fi
done

cert_after="$(served_cert)"
rotated=yes
if [ -z "$cert_after" ] || [ "$cert_after" = "$cert_before" ]; then
  rotated=no
  errors=$((errors + 1))
fi
metrics="$(curl -fsS "http://127.0.0.1:$admin_port/metrics")"
tls_ok=$(grep -E '^pullthrough_tls_reloads_total\{result="success"\}' <<<"$metrics" | awk '{print $2}')
cfg_ok=$(grep -E '^pullthrough_config_reloads_total\{result="success"\}' <<<"$metrics" | awk '{print $2}')
rss_end="$(rss)"
peak="$(hwm)"

kill -TERM "$server_pid"
exit_code=0
wait "$server_pid" || exit_code=$?
server_pid=""

echo "== result"
echo "   errors (failed + errored + timeout + non-2xx + wrong answers): $errors"
echo "   certificate rotated: $rotated (tls reloads ok: ${tls_ok:-0}), config reloads ok: ${cfg_ok:-0}"
echo "   RSS start $rss_start, middle $rss_middle, end $rss_end, peak $peak"
for p in h2 http/1.1; do
  echo "   mean latency $p: first slice ${first_mean[$p]:-?}, last slice ${last_mean[$p]:-?}"
done
echo "   server exit after SIGTERM: $exit_code"
if [ "$errors" -ne 0 ] || [ "$exit_code" -ne 0 ] || [ "${cfg_ok:-0}" = "0" ]; then
  echo "soak FAILED; server log:" >&2
  tail -n 30 "$work/server.log" >&2
  exit 1
fi
