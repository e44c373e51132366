#!/usr/bin/env bash
# What a Pod creation costs a real kube-apiserver (1.36 or later) with pullthrough's
# MutatingAdmissionPolicy, its webhook, both, a trivial policy that patches the same four images
# without looking at them, and no mutation at all: the API server's CPU per server-side dry-run
# Pod creation (from /proc), one client on a keep-alive connection, the four-image Pod.
#
#   PULLTHROUGH_APISERVER_KUBECONFIG  admin kubeconfig with a bearer token (required)
#   PULLTHROUGH_APISERVER_PID         the kube-apiserver's pid (default: pgrep)
#   PT_BIN                            the pullthrough binary (default target/release/pullthrough)
#   ROUNDS, CREATES                   rounds per mode (3) and Pods per round (300)
#
# Nothing is left behind: the namespaces, policies and the webhook configuration it makes are
# deleted at the end. Prints one line per mode: median and range of the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

kubeconfig=${PULLTHROUGH_APISERVER_KUBECONFIG:?set PULLTHROUGH_APISERVER_KUBECONFIG to an admin kubeconfig}
pid=${PULLTHROUGH_APISERVER_PID:-$(pgrep -o -x kube-apiserver)}
[[ -x $BIN ]] || build_binaries
rounds=${ROUNDS:-3}
creates=${CREATES:-300}
run=pt-bench-$$
k() { kubectl --kubeconfig "$kubeconfig" "$@"; }

work=$(mktemp -d)
webhook_pid=
cleanup() {
  [[ -n $webhook_pid ]] && kill "$webhook_pid" 2>/dev/null
  for mode in none policy webhook both trivial; do
    k delete namespace "$run-$mode" --wait=false >/dev/null 2>&1 || true
  done
  k delete mutatingwebhookconfiguration "$run" >/dev/null 2>&1 || true
  k delete mutatingadmissionpolicy,mutatingadmissionpolicybinding "$run" "$run-trivial" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The policy, bound to namespaces labelled $run-p; the trivial one to $run-t.
"$BIN" policy --account-id 123456789012 --region eu-west-1 --name "$run" \
  --namespace-selector "$run-p=true" | k apply -f - >/dev/null
host=123456789012.dkr.ecr.eu-west-1.amazonaws.com
k apply -f - >/dev/null <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata: {name: $run-trivial}
spec:
  failurePolicy: Ignore
  reinvocationPolicy: Never
  matchConstraints:
    resourceRules:
      - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}
  mutations:
    - patchType: JSONPatch
      jsonPatch:
        expression: >-
          [JSONPatch{op: 'replace', path: '/spec/containers/0/image', value: '$host/docker-hub/library/nginx:1.27'},
           JSONPatch{op: 'replace', path: '/spec/containers/1/image', value: '$host/quay/prometheus/node-exporter:v1.8.2'},
           JSONPatch{op: 'replace', path: '/spec/containers/2/image', value: '$host/k8s/pause:3.10'},
           JSONPatch{op: 'replace', path: '/spec/containers/3/image', value: '$host/github/fluxcd/source-controller:v1.4.1'}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata: {name: $run-trivial}
spec:
  policyName: $run-trivial
  matchResources:
    namespaceSelector: {matchLabels: {$run-t: "true"}}
YAML

# The webhook, on loopback with a self-signed certificate, for namespaces labelled $run-w.
write_config "$work/config.yaml"
port=$((20000 + RANDOM % 20000))
"$BIN" webhook --config "$work/config.yaml" --listen "127.0.0.1:$port" \
  --admin-listen "127.0.0.1:$((port + 1))" --self-signed-dir "$work/tls" >"$work/webhook.log" 2>&1 &
webhook_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$((port + 1))/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
k apply -f - >/dev/null <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: $run}
webhooks:
  - name: pods.pullthrough.dev
    admissionReviewVersions: [v1]
    sideEffects: None
    failurePolicy: Ignore
    timeoutSeconds: 5
    reinvocationPolicy: IfNeeded
    clientConfig:
      url: https://localhost:$port/mutate
      caBundle: $(base64 -w0 "$work/tls/ca.crt")
    rules:
      - {apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [pods]}
    namespaceSelector: {matchLabels: {$run-w: "true"}}
    # As the chart writes it with policy.enabled: not called for Pods the policy rewrote.
    matchConditions:
      - name: not-rewritten-by-the-policy
        expression: >-
          request.resource.resource != 'pods' ||
          !object.spec.containers.all(c, has(c.image) && c.image.startsWith('$host/') && !c.image.contains('@')) ||
          (has(object.spec.initContainers) && !object.spec.initContainers.all(c, has(c.image) && c.image.startsWith('$host/') && !c.image.contains('@')))
YAML

declare -A labels=([none]="" [policy]="$run-p" [webhook]="$run-w" [both]="$run-p $run-w" [trivial]="$run-t")
for mode in none policy webhook both trivial; do
  k create namespace "$run-$mode" >/dev/null
  k create serviceaccount default -n "$run-$mode" >/dev/null 2>&1 || true
  for label in ${labels[$mode]}; do k label namespace "$run-$mode" "$label=true" >/dev/null; done
done
sleep 2

server=$(k config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')
ca=$(k config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority}')
token=$(k config view --minify --raw -o jsonpath='{.users[0].user.token}')
SERVER=$server CA=$ca TOKEN=$token PID=$pid RUN=$run ROUNDS=$rounds CREATES=$creates python3 - <<'PY'
import http.client, json, os, ssl, statistics, time, urllib.parse

url = urllib.parse.urlparse(os.environ["SERVER"])
context = ssl.create_default_context(cafile=os.environ["CA"])
headers = {"Authorization": "Bearer " + os.environ["TOKEN"], "Content-Type": "application/json"}
pid, run = os.environ["PID"], os.environ["RUN"]
rounds, creates = int(os.environ["ROUNDS"]), int(os.environ["CREATES"])
hz = os.sysconf("SC_CLK_TCK")
images = ["nginx:1.27", "quay.io/prometheus/node-exporter:v1.8.2", "registry.k8s.io/pause:3.10",
          "ghcr.io/fluxcd/source-controller:v1.4.1"]
body = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "bench-"},
                   "spec": {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}})

def cpu():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / hz

def measure(mode):
    conn = http.client.HTTPSConnection(url.hostname, url.port, context=context)
    path = f"/api/v1/namespaces/{run}-{mode}/pods?dryRun=All"
    for _ in range(20):  # warm the connection and the caches
        conn.request("POST", path, body, headers); conn.getresponse().read()
    start_cpu, start = cpu(), time.monotonic()
    for _ in range(creates):
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 201:
            raise SystemExit(f"{mode}: {response.status} {data[:300]}")
    elapsed, used = time.monotonic() - start, cpu() - start_cpu
    pod = json.loads(data)
    rewritten = sum(1 for c in pod["spec"]["containers"] if c["image"].startswith("123456789012."))
    return used / creates * 1000, creates / elapsed, rewritten

modes = ["none", "policy", "webhook", "both", "trivial"]
results = {m: [] for m in modes}
for r in range(rounds):
    for mode in (modes if r % 2 == 0 else list(reversed(modes))):
        results[mode].append(measure(mode))
print(f"kube-apiserver CPU per dry-run Pod creation, {creates} Pods x {rounds} rounds, one client")
for mode in modes:
    ms = [x[0] for x in results[mode]]
    rps = [x[1] for x in results[mode]]
    print(f"{mode:8} {statistics.median(ms):5.2f} ms CPU (rounds {min(ms):.2f}-{max(ms):.2f}), "
          f"{statistics.median(rps):6.0f} Pods/s, {results[mode][-1][2]} of 4 images rewritten")
policy, trivial = statistics.median(x[0] for x in results["policy"]), statistics.median(x[0] for x in results["trivial"])
print(f"policy / trivial policy: {policy / trivial:.2f}x")
PY
