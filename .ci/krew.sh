#!/usr/bin/env bash
# The binary's release archives and the krew plugin manifest, for .github/workflows/release.yml:
#
#   .ci/krew.sh archive BINARY VERSION OS ARCH DIR   BINARY packed as kubectl-pullthrough (and
#                                                    pullthrough) with the README into
#                                                    DIR/kubectl-pullthrough-VERSION-OS-ARCH.tar.gz
#   .ci/krew.sh manifest OWNER VERSION DIR           plugins/pullthrough.yaml filled in with the
#                                                    sha256 of each archive in DIR, as DIR/pullthrough.yaml
set -euo pipefail
cd "$(dirname "$0")/.."

platforms=(linux-amd64 linux-arm64 darwin-amd64 darwin-arm64)

fail() {
  echo "$*" >&2
  exit 1
}

archive() {
  local binary=$1 version=$2 os=$3 arch=$4 dir=$5 stage name
  [[ -x $binary ]] || fail "$binary is not an executable"
  name=kubectl-pullthrough-$version-$os-$arch
  stage=$(mktemp -d)
  cp "$binary" "$stage/kubectl-pullthrough"
  cp "$binary" "$stage/pullthrough"
  cp README.md "$stage/"
  mkdir -p "$dir"
  # Plain tar options only: the darwin archives are packed on macOS.
  tar -C "$stage" -czf "$dir/$name.tar.gz" .
  rm -rf "$stage"
  echo "$dir/$name.tar.gz"
}

sha() {
  sha256sum "$1" | cut -d' ' -f1
}

manifest() {
  local owner=$1 version=$2 dir=$3 platform file key
  local -a args=(-e "s|@VERSION@|$version|g" -e "s|@OWNER@|$owner|g")
  for platform in "${platforms[@]}"; do
    file=$dir/kubectl-pullthrough-$version-$platform.tar.gz
    [[ -f $file ]] || fail "no archive $file"
    key=$(tr 'a-z-' 'A-Z_' <<<"$platform")
    args+=(-e "s|@SHA256_${key}@|$(sha "$file")|g")
  done
  sed "${args[@]}" plugins/pullthrough.yaml >"$dir/pullthrough.yaml"
  if grep -q '@[A-Z0-9_]*@' "$dir/pullthrough.yaml"; then
    fail "placeholders left in $dir/pullthrough.yaml"
  fi
  echo "$dir/pullthrough.yaml"
}

case ${1:-} in
archive)
  [[ $# -eq 6 ]] || fail "usage: $0 archive BINARY VERSION OS ARCH DIR"
  archive "$2" "$3" "$4" "$5" "$6"
  ;;
manifest)
  [[ $# -eq 4 ]] || fail "usage: $0 manifest OWNER VERSION DIR"
  manifest "$2" "$3" "$4"
  ;;
*)
  fail "usage: $0 archive BINARY VERSION OS ARCH DIR | manifest OWNER VERSION DIR"
  ;;
esac
