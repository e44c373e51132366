#!/usr/bin/env bash
# Renders charts/pullthrough into manifests/pullthrough.yaml, the plain manifests for
# `kubectl apply`. With --check, renders to a temporary file and fails when the committed file
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
    --set config.region=eu-west-1
}

mkdir -p manifests
if $check; then
  tmp=$(mktemp)
  trap 'rm -f "$tmp"' EXIT
  render >"$tmp"
  if ! diff -u "$out" "$tmp"; then
    echo "$out is out of date: run scripts/render-manifests.sh and commit the result" >&2
    exit 1
  fi
  echo "$out is up to date"
else
  render >"$out"
  echo "wrote $out"
fi
