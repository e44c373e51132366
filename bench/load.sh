#!/usr/bin/env bash
# Load benchmark: pullthrough beside the floor (examples/floor.rs, the same server answering
# `allowed: true` without looking at the Pod), both over TLS on loopback, driven by h2load with
# keep-alive connections over HTTP/2 and HTTP/1.1, POSTing captured AdmissionReview bodies.
#
#   bench/load.sh                 # the whole run, a few minutes on 2 cores
#   ROUNDS=1 CONNS="10" bench/load.sh    # a quick look
#   PT_BIN=/tmp/pullthrough-old bench/load.sh   # another build of pullthrough (an older commit)
#
# Reports throughput, latency percentiles, the ratio to the floor, server CPU per request, RSS
# and start-to-ready time as a Markdown table on stdout; raw output goes to $OUT.
#
# The machine may be shared, and h2load runs on the same cores: throughput drifts from one
# second to the next. Each round runs the two servers back to back (the floor first in odd
# rounds, pullthrough first in even ones), and the ratio of a point is the median of its
# rounds' ratios (with the lowest and highest), which a drift moves far less than a ratio of
# means.
set -euo pipefail

cd "$(dirname "$0")/.."

DURATION=${DURATION:-2}           # measured seconds per h2load run
ROUNDS_PER_POINT=${ROUNDS:-5}     # floor and pullthrough alternate this many times per point
WARMUP=${WARMUP:-1}               # warm-up seconds before each measured run
CONNS=${CONNS:-"1 10 50"}         # connection counts
PROTOS=${PROTOS:-"h2 h1"}         # HTTP/2 and HTTP/1.1
PT_PORT=${PT_PORT:-8443}          # pullthrough webhook (TLS)
ADMIN_PORT=${ADMIN_PORT:-8080}    # pullthrough admin (plain HTTP, /readyz)
FLOOR_PORT=${FLOOR_PORT:-9443}    # the floor (TLS)
READY_STARTS=${READY_STARTS:-5}   # how many cold starts to time
RSS_REQUESTS=${RSS_REQUESTS:-100000}
OUT=${OUT:-target/bench-load}
FIXTURES=tests/fixtures/admission
MAIN_FIXTURE=$FIXTURES/pod-create-initcontainers-native-sidecar-multi-container.json
SIMPLE_FIXTURE=$FIXTURES/pod-create-simple.json

# shellcheck source=bench/common.sh
source bench/common.sh

# --- Tools and binaries ---
need h2load nghttp2-client
build_binaries

for port in "$PT_PORT" "$ADMIN_PORT" "$FLOOR_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        log "port $port on 127.0.0.1 is in use; set PT_PORT, ADMIN_PORT or FLOOR_PORT"
        exit 1
    fi
done

rm -rf "$OUT"
mkdir -p "$OUT/tls" "$OUT/h2load"
CONFIG=$OUT/config.yaml
write_config "$CONFIG"

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# --- Servers ---
# pullthrough's logs go to a pipe, as a container's stderr does, and only the tail is kept.
start_pullthrough() { # extra args...
    "$BIN" webhook --config "$CONFIG" \
        --listen "127.0.0.1:$PT_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" \
        --shutdown-delay 0s --drain-timeout 1s "$@" \
        2> >(tail -n 2000 >"$OUT/pullthrough.log") &
    PT_PID=$!
    PIDS+=("$PT_PID")
}

stop() { # pid
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

ready() {
    exec 3<>"/dev/tcp/127.0.0.1/$ADMIN_PORT" || return 1
    printf 'GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
    local status
    read -r status <&3 || true
    exec 3<&-
    [[ $status == *" 200 "* ]]
}

# Microseconds from exec to a 200 on /readyz, polling in a tight loop without forking; sets
# READY_US.
time_to_ready() { # extra args...
    local t0 t1
    t0=$(date +%s%N)
    start_pullthrough "$@"
    until ready 2>/dev/null; do
        if ! kill -0 "$PT_PID" 2>/dev/null; then
            log "pullthrough exited during start:"; cat "$OUT/pullthrough.log" >&2; exit 1
        fi
    done
    t1=$(date +%s%N)
    READY_US=$(((t1 - t0) / 1000))
}

log "timing start to ready"
# The first start also generates the self-signed CA and certificate the rest of the run uses.
time_to_ready --self-signed-dir "$OUT/tls"
first_ready_us=$READY_US
stop "$PT_PID"
ready_us=()
for _ in $(seq "$READY_STARTS"); do
    time_to_ready --tls-cert-file "$OUT/tls/tls.crt" --tls-key-file "$OUT/tls/tls.key"
    ready_us+=("$READY_US")
    stop "$PT_PID"
done
mapfile -t sorted_ready < <(printf '%s\n' "${ready_us[@]}" | sort -n)
ready_median_us=${sorted_ready[$((${#sorted_ready[@]} / 2))]}
ready_max_us=${sorted_ready[-1]}

start_pullthrough --tls-cert-file "$OUT/tls/tls.crt" --tls-key-file "$OUT/tls/tls.key"
until ready 2>/dev/null; do sleep 0.01; done
"$FLOOR" --listen "127.0.0.1:$FLOOR_PORT" \
    --tls-cert-file "$OUT/tls/tls.crt" --tls-key-file "$OUT/tls/tls.key" 2>"$OUT/floor.log" &
FLOOR_PID=$!
PIDS+=("$FLOOR_PID")
until (exec 3<>"/dev/tcp/127.0.0.1/$FLOOR_PORT") 2>/dev/null; do sleep 0.01; done

# Both answer the real request as they should before anything is measured.
check() { # url, fixture, expected text
    local body
    body=$(curl -sS --cacert "$OUT/tls/ca.crt" -H 'content-type: application/json' \
        --data-binary "@$2" "$1")
    if [[ $body != *"$3"* ]]; then
        log "unexpected answer from $1: $body"; exit 1
    fi
}
check "https://localhost:$PT_PORT/mutate" "$MAIN_FIXTURE" '"patchType":"JSONPatch"'
check "https://localhost:$FLOOR_PORT/mutate" "$MAIN_FIXTURE" '"allowed":true'

# --- Measurements ---
rss_kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

declare -A RPS_SUM ROUNDS TICKS DONE RPS_ROUND
# Runs h2load once against one server and adds up its req/s, requests and server CPU time; the
# per-request latencies are kept for the percentiles.
run() { # name pid port proto conns fixture [extra h2load args...]
    local name=$1 pid=$2 port=$3 proto=$4 conns=$5 fixture=$6
    shift 6
    local key="$name/$proto/$conns/$(basename "$fixture" .json)"
    local file="$OUT/h2load/${key//\//_}.${ROUND:-0}"
    local proto_args=()
    [[ $proto == h1 ]] && proto_args=(--h1)
    local c0 c1
    if [[ ${WARM:-} == yes ]]; then
        # A separate warm-up run, so that the CPU time measured is that of the measured requests.
        h2load "${proto_args[@]}" -c "$conns" -t 1 -m 1 -D "$WARMUP" \
            -H 'content-type: application/json' -d "$fixture" \
            "https://127.0.0.1:$port/mutate" >/dev/null 2>&1
    fi
    c0=$(cpu_ticks "$pid")
    h2load "${proto_args[@]}" -c "$conns" -t 1 -m 1 \
        -H 'content-type: application/json' -d "$fixture" \
        --log-file "$file.log" "$@" \
        "https://127.0.0.1:$port/mutate" >"$file.out" 2>&1
    c1=$(cpu_ticks "$pid")
    local rps done_ok
    rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$file.out")
    done_ok=$(awk '/^requests:/ {print $8}' "$file.out")
    if ! grep -q '^status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx' "$file.out" ||
        ! grep -q ' 0 failed, 0 errored, 0 timeout' "$file.out"; then
        log "errors in $key:"; cat "$file.out" >&2; exit 1
    fi
    RPS_SUM[$key]=$(awk -v a="${RPS_SUM[$key]:-0}" -v b="$rps" 'BEGIN { print a + b }')
    RPS_ROUND[$key/${ROUND:-0}]=$rps
    ROUNDS[$key]=$((${ROUNDS[$key]:-0} + 1))
    TICKS[$key]=$((${TICKS[$key]:-0} + c1 - c0))
    DONE[$key]=$((${DONE[$key]:-0} + done_ok))
    log "$key round ${ROUND:-0}: $rps req/s"
}

# Mean req/s, p50, p99 and max latency (us) over all rounds, and server CPU us per request.
result() { # key
    local key=$1
    local file="$OUT/h2load/${key//\//_}"
    local rps pct cpu
    rps=$(awk -v a="${RPS_SUM[$key]}" -v n="${ROUNDS[$key]}" 'BEGIN { printf "%.0f", a / n }')
    pct=$(cat "$file".*.log | awk -F'\t' '{print $3}' | sort -n | awk '
        { v[NR] = $1 }
        END {
            p50 = v[int(NR * 0.50) > 0 ? int(NR * 0.50) : 1]
            p99 = v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1]
            printf "%d %d %d", p50, p99, v[NR]
        }')
    cpu=$((TICKS[$key] * 1000000 / CLK_TCK / (DONE[$key] > 0 ? DONE[$key] : 1)))
    echo "$rps $pct $cpu"
}

log "RSS after $RSS_REQUESTS requests (HTTP/1.1, 10 connections)"
pt_rss_idle=$(rss_kib "$PT_PID" VmRSS)
floor_rss_idle=$(rss_kib "$FLOOR_PID" VmRSS)
ROUND=rss run pullthrough "$PT_PID" "$PT_PORT" h1 10 "$MAIN_FIXTURE" -n "$RSS_REQUESTS"
ROUND=rss run floor "$FLOOR_PID" "$FLOOR_PORT" h1 10 "$MAIN_FIXTURE" -n "$RSS_REQUESTS"
pt_rss_100k=$(rss_kib "$PT_PID" VmRSS)
floor_rss_100k=$(rss_kib "$FLOOR_PID" VmRSS)
rm -f "$OUT"/h2load/*.rss.log
unset RPS_SUM ROUNDS TICKS DONE RPS_ROUND
declare -A RPS_SUM ROUNDS TICKS DONE RPS_ROUND

# Each point alternates the floor and pullthrough for several short rounds, so that both see
# the same machine: other work on it comes and goes.
timed=(-D "$DURATION")
WARM=yes
points=()
for proto in $PROTOS; do
    for conns in $CONNS; do
        points+=("$proto $conns $MAIN_FIXTURE")
    done
done
for proto in $PROTOS; do
    points+=("$proto 10 $SIMPLE_FIXTURE")
done
for point in "${points[@]}"; do
    read -r proto conns fixture <<<"$point"
    for ROUND in $(seq "$ROUNDS_PER_POINT"); do
        # Which server goes first alternates too, so that neither always meets a drift first.
        if ((ROUND % 2)); then
            run floor "$FLOOR_PID" "$FLOOR_PORT" "$proto" "$conns" "$fixture" "${timed[@]}"
            run pullthrough "$PT_PID" "$PT_PORT" "$proto" "$conns" "$fixture" "${timed[@]}"
        else
            run pullthrough "$PT_PID" "$PT_PORT" "$proto" "$conns" "$fixture" "${timed[@]}"
            run floor "$FLOOR_PID" "$FLOOR_PORT" "$proto" "$conns" "$fixture" "${timed[@]}"
        fi
    done
done

pt_hwm=$(rss_kib "$PT_PID" VmHWM)
floor_hwm=$(rss_kib "$FLOOR_PID" VmHWM)
pt_rss_end=$(rss_kib "$PT_PID" VmRSS)

# --- Report ---
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ms() { awk -v u="$1" 'BEGIN { printf "%.1f", u / 1000 }'; }

echo "Machine: $(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo);" \
    "load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Run: $(date -u +%Y-%m-%dT%H:%M:%SZ), per point $ROUNDS_PER_POINT rounds of ${DURATION}s" \
    "(after ${WARMUP}s warm-up) for each server, back to back; h2load 1 thread, 1 stream per" \
    "connection, over TLS on 127.0.0.1"
echo
echo "| body | proto | conns | floor req/s | pullthrough req/s | ratio, median of rounds (lowest to highest) | floor p50 / p99 / max (us) | pullthrough p50 / p99 / max (us) | server CPU us/req floor / pullthrough |"
echo "|---|---|---:|---:|---:|---:|---|---|---|"
row() { # proto conns fixture label
    read -r f_rps f_p50 f_p99 f_max f_cpu <<<"$(result "floor/$1/$2/$3")"
    read -r p_rps p_p50 p_p99 p_max p_cpu <<<"$(result "pullthrough/$1/$2/$3")"
    local ratio round
    ratio=$(for round in $(seq "$ROUNDS_PER_POINT"); do
        awk -v a="${RPS_ROUND[pullthrough/$1/$2/$3/$round]}" \
            -v b="${RPS_ROUND[floor/$1/$2/$3/$round]}" 'BEGIN { print 100 * a / b }'
    done | sort -n | awk '{ v[NR] = $1 }
        END { printf "%.0f%% (%.0f to %.0f%%)", v[int((NR + 1) / 2)], v[1], v[NR] }')
    printf '| %s | %s | %s | %.0f | %.0f | %s | %s / %s / %s | %s / %s / %s | %s / %s |\n' \
        "$4" "$1" "$2" "$f_rps" "$p_rps" "$ratio" \
        "$f_p50" "$f_p99" "$f_max" "$p_p50" "$p_p99" "$p_max" "$f_cpu" "$p_cpu"
}
main_name=$(basename "$MAIN_FIXTURE" .json)
simple_name=$(basename "$SIMPLE_FIXTURE" .json)
for proto in $PROTOS; do
    for conns in $CONNS; do
        row "$proto" "$conns" "$main_name" "4 images"
    done
done
for proto in $PROTOS; do
    row "$proto" 10 "$simple_name" "1 image"
done
echo
echo "| | floor | pullthrough |"
echo "|---|---:|---:|"
echo "| RSS idle (MiB) | $(mib "$floor_rss_idle") | $(mib "$pt_rss_idle") |"
echo "| RSS after $RSS_REQUESTS requests (MiB) | $(mib "$floor_rss_100k") | $(mib "$pt_rss_100k") |"
echo "| peak RSS, VmHWM after the run (MiB) | $(mib "$floor_hwm") | $(mib "$pt_hwm") |"
echo "| RSS at the end (MiB) | | $(mib "$pt_rss_end") |"
echo "| start to ready, first start with certificate generation (ms) | | $(ms "$first_ready_us") |"
echo "| start to ready, median / max of $READY_STARTS starts (ms) | | $(ms "$ready_median_us") / $(ms "$ready_max_us") |"
