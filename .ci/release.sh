#!/usr/bin/env bash
# The release's version, notes and chart, for .github/workflows/release.yml and .ci/run:
#
#   .ci/release.sh check [TAG]             Cargo.toml, the chart's version and appVersion and the
#                                          latest CHANGELOG.md entry name one version; with a tag
#                                          (v1.2.3), it must be that version and the entry dated
#   .ci/release.sh notes                   the latest CHANGELOG.md entry, as release notes
#   .ci/release.sh package-chart OWNER DIR the chart, packaged into DIR for ghcr.io/OWNER: its
#                                          default image becomes ghcr.io/OWNER/pullthrough
#
# The version lives in Cargo.toml; everything else is checked against it.
set -euo pipefail
cd "$(dirname "$0")/.."

chart=charts/pullthrough
# The GitHub owner the chart's defaults name; a fork's release writes its own in.
published_owner=pullthrough

fail() {
  echo "$*" >&2
  exit 1
}

cargo_version() {
  sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1
}

chart_field() {
  sed -n "s/^$1: \"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" "$chart/Chart.yaml"
}

# The heading of the latest released entry: `## [1.2.3] - 2026-12-01` (or `- Unreleased` while
# it is being written); an `## [Unreleased]` section above it is skipped.
latest_heading() {
  grep -E '^## \[' CHANGELOG.md | grep -v '^## \[Unreleased\]' | head -n 1
}

check() {
  local tag=${1:-} version heading entry_version entry_date
  version=$(cargo_version)
  [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
    fail "Cargo.toml version '$version' is not a semantic version"
  [[ $(chart_field version) == "$version" ]] ||
    fail "$chart/Chart.yaml version $(chart_field version) differs from Cargo.toml version $version"
  [[ $(chart_field appVersion) == "$version" ]] ||
    fail "$chart/Chart.yaml appVersion $(chart_field appVersion) differs from Cargo.toml version $version"
  heading=$(latest_heading)
  [[ $heading =~ ^##\ \[([^]]+)\]\ -\ (.+)$ ]] ||
    fail "CHANGELOG.md has no entry headed '## [$version] - YYYY-MM-DD'"
  entry_version=${BASH_REMATCH[1]}
  entry_date=${BASH_REMATCH[2]}
  [[ $entry_version == "$version" ]] ||
    fail "CHANGELOG.md's latest entry is $entry_version, Cargo.toml's version is $version: add an entry for $version"
  [[ $entry_date =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ || $entry_date == Unreleased ]] ||
    fail "CHANGELOG.md's entry for $version is dated '$entry_date': YYYY-MM-DD, or Unreleased until the release"
  [[ -n $(notes) ]] || fail "CHANGELOG.md's entry for $version is empty"
  if [[ -n $tag ]]; then
    [[ $tag == "v$version" ]] || fail "tag $tag does not name version $version (Cargo.toml): expected v$version"
    [[ $entry_date != Unreleased ]] ||
      fail "CHANGELOG.md's entry for $version is still Unreleased: date it before tagging"
    echo "tag $tag: version $version, CHANGELOG.md entry of $entry_date"
  else
    echo "version $version: Cargo.toml, $chart/Chart.yaml and CHANGELOG.md ($entry_date) agree"
  fi
}

# The body of the latest entry: from below its heading to the next heading or the link
# definitions at the end, without blank lines at either end.
notes() {
  awk -v heading="$(latest_heading)" '
    $0 == heading { inside = 1; next }
    inside && (/^## / || /^\[[^]]+\]: /) { exit }
    inside { lines[n++] = $0 }
    END {
      first = 0; while (first < n && lines[first] ~ /^[[:space:]]*$/) first++
      last = n - 1; while (last >= first && lines[last] ~ /^[[:space:]]*$/) last--
      for (i = first; i <= last; i++) print lines[i]
    }' CHANGELOG.md
}

package_chart() {
  local owner=${1:-} dest=${2:-} work
  [[ -n $owner && -n $dest ]] || fail "usage: $0 package-chart OWNER DIR"
  # Registry paths are lowercase; GitHub owners are not always.
  owner=${owner,,}
  [[ $owner =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$ ]] || fail "'$owner' is not a GitHub owner name"
  # shellcheck source=.ci/helm.sh
  source .ci/helm.sh
  find_helm
  work=$(mktemp -d)
  # shellcheck disable=SC2064 # the directory is known now
  trap "rm -rf '$work'" RETURN
  cp -R "$chart" "$work/pullthrough"
  if [[ $owner != "$published_owner" ]]; then
    grep -rlF "ghcr.io/$published_owner/" "$work/pullthrough" |
      xargs sed -i "s|ghcr\.io/$published_owner/|ghcr.io/$owner/|g"
    sed -i "s|github\.com/$published_owner/|github.com/$owner/|g" "$work/pullthrough/Chart.yaml"
  fi
  grep -qxF "  repository: ghcr.io/$owner/pullthrough" "$work/pullthrough/values.yaml" ||
    fail "$chart/values.yaml does not default image.repository to ghcr.io/$published_owner/pullthrough"
  "$HELM" lint --strict "$work/pullthrough" \
    --set config.region=eu-west-1 --set aws.roleArn=arn:aws:iam::123456789012:role/pullthrough >&2
  mkdir -p "$dest"
  "$HELM" package "$work/pullthrough" --destination "$dest" >&2
  echo "$dest/pullthrough-$(chart_field version).tgz"
}

case ${1:-} in
  check) check "${2:-}" ;;
  notes) notes ;;
  package-chart) package_chart "${2:-}" "${3:-}" ;;
  *) fail "usage: $0 check [TAG] | notes | package-chart OWNER DIR" ;;
esac
