#!/usr/bin/env bash
# Dependency policy: licences, bans and sources always; RustSec advisories when the advisory
# database can be fetched (it is a git repository on GitHub, so that part needs network).
#
#   .ci/deny.sh                 advisories are skipped, with a notice, when the database is unreachable
#   DENY_ADVISORIES=required .ci/deny.sh     an unreachable database fails the run
#
# Installs cargo-deny from crates.io when it is missing (about 3 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "== installing cargo-deny"
  cargo install cargo-deny --locked
fi
cargo deny --version

echo "== cargo deny: licenses, bans, sources"
cargo deny --locked check licenses bans sources

echo "== cargo deny: advisories"
if cargo deny fetch db; then
  cargo deny --locked check --disable-fetch advisories
elif [ "${DENY_ADVISORIES:-}" = "required" ]; then
  echo "the RustSec advisory database cannot be fetched" >&2
  exit 1
else
  echo "NOTICE: advisories not checked: the RustSec advisory database cannot be fetched from here"
fi
