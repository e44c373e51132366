#!/usr/bin/env bash
# Dependency policy with cargo-deny: licences, bans, sources, and RustSec advisories, always
# against a real advisory database:
#
#   1. in the hosted CI workflow (GITHUB_ACTIONS=true), a fresh copy of the database, when
#      `cargo deny fetch db` can reach it (it is a git repository on GitHub);
#   2. otherwise the snapshot in shared/advisory-db beside the repository (its SNAPSHOT.md names
#      the commit and date), or in $PULLTHROUGH_ADVISORY_DB when that is set; cargo-deny reads a
#      database as a git repository, so the snapshot is committed into one under
#      $PULLTHROUGH_TOOLS_DIR (default target/tools) and checked with --offline.
#
# Either way the check can fail, and the output says which database was used and how old it is.
# With neither, the run fails. Installs cargo-deny from crates.io, at a pinned version, when it
# is missing (about 3 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

CARGO_DENY_VERSION=0.20.2
tools=${PULLTHROUGH_TOOLS_DIR:-$PWD/target/tools}

if ! command -v cargo-deny >/dev/null 2>&1 ||
  [[ $(cargo deny --version) != "cargo-deny $CARGO_DENY_VERSION" ]]; then
  echo "== installing cargo-deny $CARGO_DENY_VERSION"
  cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION"
fi
cargo deny --version

echo "== cargo deny: licenses, bans, sources"
cargo deny --locked check licenses bans sources

# cargo-deny keeps the default database in <db-path>/advisory-db-<hash of its URL>.
db_folder=advisory-db-3157b0e258782691

age_days() {
  echo $((($(date -u +%s) - $(date -u -d "$1" +%s)) / 86400))
}

# The snapshot folder: $PULLTHROUGH_ADVISORY_DB, or shared/ beside this checkout or beside the
# repository it is a worktree of.
find_snapshot() {
  local common candidates=()
  if [[ -n ${PULLTHROUGH_ADVISORY_DB:-} ]]; then
    candidates+=("$PULLTHROUGH_ADVISORY_DB")
  fi
  candidates+=("$PWD/../shared/advisory-db")
  if common=$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null); then
    candidates+=("$(dirname "$common")/../shared/advisory-db")
  fi
  for dir in "${candidates[@]}"; do
    if [[ -f $dir/SNAPSHOT.md && -d $dir/crates ]]; then
      (cd "$dir" && pwd)
      return 0
    fi
  done
  return 1
}

# Commits the snapshot into a git repository where cargo-deny looks for it; done again only
# when the snapshot changes. Prints the db-path.
prepare_snapshot() {
  local snapshot=$1 date=$2 db_path=$tools/advisory-dbs stamp
  stamp=$(sha256sum <"$snapshot/SNAPSHOT.md")
  if [[ -f $db_path/.snapshot && $(cat "$db_path/.snapshot") == "$stamp" ]]; then
    echo "$db_path"
    return 0
  fi
  rm -rf "$db_path"
  mkdir -p "$db_path"
  cp -R "$snapshot" "$db_path/$db_folder"
  chmod -R u+w "$db_path/$db_folder"
  (
    cd "$db_path/$db_folder"
    git init --quiet --initial-branch=main
    git add --all
    GIT_AUTHOR_DATE="$date T00:00:00Z" GIT_COMMITTER_DATE="$date T00:00:00Z" \
      git -c user.name=snapshot -c user.email=snapshot@localhost -c commit.gpgsign=false \
      commit --quiet --message "RustSec advisory database snapshot of $date"
  ) >&2
  echo "$stamp" >"$db_path/.snapshot"
  echo "$db_path"
}

echo "== cargo deny: advisories"
mkdir -p "$tools"
# Only the hosted CI workflow fetches the database; everywhere else the snapshot is used and
# nothing is fetched.
if [[ ${GITHUB_ACTIONS:-} == true ]] && cargo deny fetch db 2>"$tools/deny-fetch.log"; then
  fresh=${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/$db_folder
  echo "database: RustSec, fetched now ($(git -C "$fresh" log -1 --format='commit %h of %cs' 2>/dev/null || echo 'commit unknown'))"
  # Online, so that yanked versions are looked up in the crates.io index too.
  cargo deny --locked check advisories
else
  if [[ -s $tools/deny-fetch.log ]]; then
    echo "the RustSec database cannot be fetched: $(grep -v "^[[:space:]]*$" "$tools/deny-fetch.log" | tail -n 1)"
  fi
  if ! snapshot=$(find_snapshot); then
    echo "no advisory database: the fetch failed and no snapshot was found (set PULLTHROUGH_ADVISORY_DB)" >&2
    exit 1
  fi
  line=$(grep -o 'commit [0-9a-f]\{40\} ([0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\})' "$snapshot/SNAPSHOT.md" | head -n 1)
  [[ $line =~ ^commit\ ([0-9a-f]{40})\ \(([0-9-]{10})\)$ ]] ||
    { echo "$snapshot/SNAPSHOT.md names no 'commit <sha> (<date>)'" >&2; exit 1; }
  commit=${BASH_REMATCH[1]}
  date=${BASH_REMATCH[2]}
  echo "database: RustSec snapshot $snapshot, commit ${commit:0:12} of $date ($(age_days "$date") days old)"
  db_path=$(prepare_snapshot "$snapshot" "$date")
  config=$tools/deny-snapshot.toml
  # deny.toml with the database path set, and nothing else changed.
  awk -v db="$db_path" '{ print } /^\[advisories\]$/ { print "db-path = \"" db "\"" }' deny.toml >"$config"
  grep -q '^db-path = ' "$config" || { echo "deny.toml has no [advisories] section" >&2; exit 1; }
  cargo deny --locked --offline --config "$config" check advisories
fi
