#!/usr/bin/env bash
# Checks the chart's PrometheusRule with promtool (Debian package prometheus, installed when
# missing): renders it, extracts its spec as a rule file, runs `promtool check rules` and the
# unit tests in tests/alerts/. Also renders the Grafana dashboard ConfigMap and parses its JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/helm.sh
source .ci/helm.sh
find_helm

if ! command -v promtool >/dev/null; then
  echo "installing promtool (Debian package prometheus)" >&2
  if [[ $(id -u) == 0 ]]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus >&2
fi
echo "== promtool: $(promtool --version 2>&1 | head -n 1)"
python3 -c 'import yaml' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check 'PyYAML>=6,<7' >&2

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$HELM" template pullthrough charts/pullthrough --namespace pullthrough \
  -f tests/chart/required-values.yaml \
  --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true >"$out/all.yaml"
python3 - "$out" <<'PY'
import json, sys
import yaml

out = sys.argv[1]
rules = dashboards = 0
for doc in yaml.safe_load_all(open(f"{out}/all.yaml")):
    if not doc:
        continue
    if doc["kind"] == "PrometheusRule":
        yaml.safe_dump(doc["spec"], open(f"{out}/rules.yaml", "w"), sort_keys=False, width=1000)
        rules += 1
    if doc["kind"] == "ConfigMap" and doc["metadata"]["labels"].get("grafana_dashboard") == "1":
        for name, text in doc["data"].items():
            json.loads(text)
            dashboards += 1
if rules != 1 or dashboards != 1:
    sys.exit(f"expected one PrometheusRule and one dashboard, got {rules} and {dashboards}")
print("rendered one PrometheusRule and one dashboard ConfigMap (JSON parses)")
PY
promtool check rules "$out/rules.yaml"
cp tests/alerts/*.test.yaml "$out/"
(cd "$out" && promtool test rules ./*.test.yaml)
