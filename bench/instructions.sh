#!/usr/bin/env bash
# Instructions per request of the whole server, pullthrough beside the floor: each runs under
# valgrind's callgrind while h2load sends it the captured AdmissionReview over TLS with
# keep-alive connections. Counting instructions instead of seconds gives the same figure on a
# busy machine and on a quiet one, so a change to the hot path can be judged in one run;
# bench/load.sh gives the figures in seconds. Kernel time is not counted: both servers make the
# same system calls per request (strace -c shows 2 recvfrom and 1 writev each).
#
#   bench/instructions.sh                      # HTTP/1.1 and HTTP/2, 10 connections, about 1 minute
#   REQUESTS=20000 PROTOS=h2 bench/instructions.sh
#   PT_BIN=/tmp/pullthrough-old bench/instructions.sh   # another build of pullthrough
set -euo pipefail

cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-5000}   # measured requests per server and protocol
WARMUP=${WARMUP:-2000}       # requests before counting starts
CONNS=${CONNS:-10}
PROTOS=${PROTOS:-"h1 h2"}
PT_PORT=${PT_PORT:-8443}
ADMIN_PORT=${ADMIN_PORT:-8080}
FLOOR_PORT=${FLOOR_PORT:-9443}
OUT=${OUT:-target/bench-instructions}
FIXTURE=${FIXTURE:-tests/fixtures/admission/pod-create-initcontainers-native-sidecar-multi-container.json}
# shellcheck source=bench/common.sh
source bench/common.sh

need h2load nghttp2-client
need callgrind_control valgrind
build_binaries

rm -rf "$OUT"
mkdir -p "$OUT/tls"
write_config "$OUT/config.yaml"

PID=
cleanup() { [[ -n $PID ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() { until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do sleep 0.2; done; }

# A certificate for both servers, from pullthrough's self-signed mode.
"$BIN" webhook --config "$OUT/config.yaml" --self-signed-dir "$OUT/tls" \
    --listen "127.0.0.1:$PT_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" 2>/dev/null &
PID=$!
wait_port "$PT_PORT"
kill "$PID"; wait "$PID" 2>/dev/null || true
PID=
TLS=(--tls-cert-file "$OUT/tls/tls.crt" --tls-key-file "$OUT/tls/tls.key")

# Prints instructions and malloc calls per request of one server.
measure() { # name proto
    local name=$1 proto=$2 port cmd
    local file="$OUT/$name.$proto"
    if [[ $name == floor ]]; then
        port=$FLOOR_PORT
        cmd=("$FLOOR" --listen "127.0.0.1:$port" "${TLS[@]}")
    else
        port=$PT_PORT
        cmd=("$BIN" webhook --config "$OUT/config.yaml" --listen "127.0.0.1:$port"
            --admin-listen "127.0.0.1:$ADMIN_PORT" "${TLS[@]}")
    fi
    valgrind --tool=callgrind --callgrind-out-file="$file.%p" "${cmd[@]}" 2>"$file.log" &
    PID=$!
    wait_port "$port"
    local load=(-c "$CONNS" -t 1 -m 1 -H 'content-type: application/json' -d "$FIXTURE")
    [[ $proto == h1 ]] && load+=(--h1)
    h2load "${load[@]}" -n "$WARMUP" "https://127.0.0.1:$port/mutate" >/dev/null 2>&1
    callgrind_control -z "$PID" >/dev/null
    h2load "${load[@]}" -n "$REQUESTS" "https://127.0.0.1:$port/mutate" >"$file.h2load" 2>&1
    callgrind_control -d "$PID" >/dev/null
    kill "$PID"; wait "$PID" 2>/dev/null || true
    PID=
    if ! grep -q "^requests: $REQUESTS total, $REQUESTS started, $REQUESTS done, $REQUESTS succeeded" "$file.h2load"; then
        log "requests failed against $name:"; cat "$file.h2load" >&2; exit 1
    fi
    # The dump taken after zeroing holds the measured requests only (file suffix .1).
    local dump
    dump=$(ls "$file".*.1)
    local total mallocs
    total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    # Calls to malloc, resolving callgrind's compressed names: "(id) name" once, "(id)" after.
    mallocs=$(awk '
        /^c?fn=\(/ {
            id = $0; sub(/^c?fn=\(/, "", id); sub(/\).*/, "", id)
            name = $0; sub(/^[^)]*\) ?/, "", name)
            if (name != "") names[id] = name
            if ($0 ~ /^cfn=/) callee = names[id]
        }
        /^calls=/ && callee == "malloc" { split($0, c, "[= ]"); n += c[2] }
        /^calls=/ { callee = "" }
        END { print n + 0 }' "$dump")
    echo "$((total / REQUESTS)) $((mallocs / REQUESTS))"
}

echo "Run: $(date -u +%Y-%m-%dT%H:%M:%SZ), $REQUESTS requests after $WARMUP, $CONNS connections," \
    "body $(basename "$FIXTURE")"
echo
echo "| proto | floor instructions/req | pullthrough instructions/req | pullthrough / floor | malloc calls/req floor / pullthrough |"
echo "|---|---:|---:|---:|---|"
for proto in $PROTOS; do
    read -r f_ins f_mal <<<"$(measure floor "$proto")"
    read -r p_ins p_mal <<<"$(measure pullthrough "$proto")"
    ratio=$(awk -v a="$p_ins" -v b="$f_ins" 'BEGIN { printf "%.2f", a / b }')
    echo "| $proto | $f_ins | $p_ins | $ratio | $f_mal / $p_mal |"
done
