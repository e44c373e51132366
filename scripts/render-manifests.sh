#!/usr/bin/env bash
# Renders charts/pullthrough into manifests/pullthrough.yaml, the plain manifests for
# `kubectl apply`, and manifests/pullthrough-policy.yaml, the same with the
# MutatingAdmissionPolicy (Kubernetes 1.36+). With --check, renders to a temporary file and fails when the committed file
# differs.
#
# The rendering uses the chart's defaults except for what plain manifests must fix:
#   release name and namespace   pullthrough
#   tls.mode                     certManager (a generated CA would change on every render)
#   config.accountId, region     the AWS documentation's example account, eu-west-1
# The images are the published ones (the chart's default image.repository, at its appVersion).
# docs/install.md shows how to put your own account and region in.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/helm.sh
source .ci/helm.sh
find_helm

out=manifests/pullthrough.yaml
check=false
if [[ ${1:-} == --check ]]; then
  check=true
elif [[ $# -gt 0 ]]; then
  echo "usage: $0 [--check]" >&2
  exit 2
fi

render() {
  cat <<'HEADER'
# pullthrough: plain manifests, rendered from charts/pullthrough by scripts/render-manifests.sh.
# Do not edit: change the chart and render again. Needs cert-manager in the cluster.
# Replace the example account 123456789012 and region eu-west-1 before applying (docs/install.md).
---
apiVersion: v1
kind: Namespace
metadata:
  name: pullthrough
  labels:
    app.kubernetes.io/name: pullthrough
    app.kubernetes.io/part-of: pullthrough
HEADER
  "$HELM" template pullthrough charts/pullthrough \
    --namespace pullthrough \
    --set tls.mode=certManager \
    --set-string config.accountId=123456789012 \
    --set config.region=eu-west-1 "$@"
}

# The default, and the recommended setup on Kubernetes 1.36+: the webhook and the
# MutatingAdmissionPolicy the reconciler keeps in step (docs/policy.md).
policy=manifests/pullthrough-policy.yaml
policy_args=(--set policy.enabled=true --api-versions admissionregistration.k8s.io/v1/MutatingAdmissionPolicy)

mkdir -p manifests
if $check; then
  tmp=$(mktemp)
  trap 'rm -f "$tmp"' EXIT
  stale=false
  render >"$tmp"
  diff -u "$out" "$tmp" || stale=true
  render "${policy_args[@]}" >"$tmp"
  diff -u "$policy" "$tmp" || stale=true
  if $stale; then
    echo "manifests/ is out of date: run scripts/render-manifests.sh and commit the result" >&2
    exit 1
  fi
  echo "$out and $policy are up to date"
else
  render >"$out"
  render "${policy_args[@]}" >"$policy"
  echo "wrote $out and $policy"
fi
