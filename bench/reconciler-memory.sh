#!/usr/bin/env bash
# Peak memory of `pullthrough reconciler` watching many opted-in Pods: the release binary against
# the mocked API server of the test suite (examples/apiserver_mock.rs: PODS Pods of Deployments
# of PER_WORKLOAD Pods in 20 namespaces, about 5 kB of JSON each, paged like a real API server)
# and the ECR stand-in (the Docker Hub rule missing, so every Pod is reported). Waits until the
# reconciler has seen every Pod and published its grouped Events, then reports its peak and
# current resident memory (VmHWM, VmRSS), how long it took to be ready, and the Events published.
#
#   bench/reconciler-memory.sh [PODS] [PER_WORKLOAD]      default: 15000 50
#
# Environment: PT_BIN and MOCK_BIN to measure other builds (default: built here, release);
# MALLOC_ARENA_MAX (default 1, as the chart sets it; empty for glibc's default of one arena per
# thread).
set -euo pipefail
cd "$(dirname "$0")/.."

pods="${1:-15000}"
per_workload="${2:-50}"
target="${CARGO_TARGET_DIR:-target}"
bin="${PT_BIN:-$target/release/pullthrough}"
mock="${MOCK_BIN:-$target/release/examples/apiserver_mock}"
if [ -z "${PT_BIN:-}" ] || [ -z "${MOCK_BIN:-}" ]; then
  echo "== release build" >&2
  nice -n 10 cargo build --release --locked --quiet --bin pullthrough --example apiserver_mock
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$mock" "$pods" "$per_workload" >"$work/mock.out" &
pids+=($!)
for _ in $(seq 1 600); do
  grep -q '^kube=' "$work/mock.out" 2>/dev/null && break
  sleep 0.1
done
read -r kube ecr < <(sed -e 's/kube=//' -e 's/ecr=//' "$work/mock.out")
echo "mock API server $kube, ECR stand-in $ecr, $pods Pods, $per_workload per Deployment" >&2

cat >"$work/kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: $kube
users:
- name: local
  user: {}
contexts:
- name: local
  context:
    cluster: local
    user: local
    namespace: pullthrough
current-context: local
YAML
cat >"$work/config.yaml" <<'YAML'
accountId: "123456789012"
region: eu-west-1
ruleCheck:
  interval: 10s
YAML

admin=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start=$(date +%s.%N)
env -i HOME="$work" PATH="$PATH" KUBECONFIG="$work/kubeconfig" RUST_LOG=warn \
  MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX-1}" POD_NAME=reconciler-0 POD_NAMESPACE=pullthrough PULLTHROUGH_DEPLOYMENT_NAME=pullthrough-reconciler \
  AWS_ACCESS_KEY_ID=AKIDSTANDIN AWS_SECRET_ACCESS_KEY=SECRET AWS_REGION=eu-west-1 \
  AWS_ENDPOINT_URL_ECR="$ecr" AWS_EC2_METADATA_DISABLED=true \
  AWS_CONFIG_FILE="$work/none" AWS_SHARED_CREDENTIALS_FILE="$work/none" \
  "$bin" reconciler --config "$work/config.yaml" --admin-listen "$admin" 2>"$work/reconciler.log" &
rpid=$!
pids+=("$rpid")

metric() { # name -> value (sum over label sets), 0 when absent
  { curl -fsS "http://$admin/metrics" 2>/dev/null || true; } |
    awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'
}

ready=""
workloads=$(( (pods + per_workload - 1) / per_workload ))
for _ in $(seq 1 1200); do
  kill -0 "$rpid" 2>/dev/null || { cat "$work/reconciler.log" >&2; echo "reconciler exited" >&2; exit 1; }
  if [ -z "$ready" ] && curl -fsS "http://$admin/readyz" >/dev/null 2>&1; then
    ready=$(echo "$(date +%s.%N) - $start" | bc)
  fi
  published=$(metric pullthrough_events_total)
  # One Event per Deployment and the summary.
  if [ -n "$ready" ] && [ "$published" -ge $((workloads + 1)) ]; then break; fi
  sleep 0.25
done
sleep 2
seen=$(metric pullthrough_reconciler_pods)
published=$(metric pullthrough_events_total)
held=$(metric pullthrough_events_rate_limited_total)
took=$(echo "$(date +%s.%N) - $start" | bc)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$rpid/status")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$rpid/status")
anon=$(awk '/RssAnon/ {print $2}' "/proc/$rpid/status")
file=$(awk '/RssFile/ {print $2}' "/proc/$rpid/status")
printf 'pods seen %s, ready after %.1f s, %s Events published in %.1f s (%s held back by the rate limit)\n' \
  "$seen" "${ready:-0}" "$published" "$took" "$held"
printf 'peak RSS %.1f MiB, RSS now %.1f MiB (%.1f MiB anonymous, %.1f MiB of files: the binary and libraries)\n' \
  "$(echo "$hwm / 1024" | bc -l)" "$(echo "$rss / 1024" | bc -l)" "$(echo "$anon / 1024" | bc -l)" "$(echo "$file / 1024" | bc -l)"
