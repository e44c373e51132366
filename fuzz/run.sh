#!/usr/bin/env bash
# Runs each fuzz target for a bounded time, one after the other.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      default: 60 seconds each, every target
#
# Works on stable Rust: `--sanitizer none` (`-s none`) drops the `-Zsanitizer=address` flag
# that needs a nightly compiler; coverage instrumentation (`-Cpasses=sancov-module`) is
# stable. Crashes land in fuzz/artifacts/<target>/ and make the script exit non-zero;
# replay one with `cargo fuzz run -s none <target> <file>`. The growing corpus is kept in
# fuzz/corpus/<target>/ (not committed); the committed seeds are read from fuzz/seeds/ and
# tests/fixtures/admission/.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(reference config review_bytes review_structured)
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 2
fi

fuzz=(nice -n 15 cargo fuzz)
for target in "${targets[@]}"; do "${fuzz[@]}" build -s none "$target"; done

status=0
for target in "${targets[@]}"; do
  corpus="corpus/$target"
  mkdir -p "$corpus" "artifacts/$target" logs
  seeds=()
  case "$target" in
    reference | config) seeds=("seeds/$target") ;;
    review_bytes) seeds=(seeds/review_bytes ../tests/fixtures/admission) ;;
  esac
  max_len=4096
  case "$target" in
    review_*) max_len=16384 ;;
  esac
  log="logs/$target.log"
  echo "== $target: ${seconds}s"
  # -timeout: one input taking over 5 s is a finding (a hang), not a slow machine.
  if ! "${fuzz[@]}" run -s none "$target" "$corpus" "${seeds[@]}" -- \
    -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -max_len="$max_len" \
    -print_final_stats=1 >"$log" 2>&1; then
    echo "!! $target failed; see fuzz/$log and fuzz/artifacts/$target/" >&2
    grep -A2 -e "panicked at" -e "ERROR: libFuzzer" "$log" | cut -c1-300 >&2 || true
    status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  echo "   executions: ${runs:-?}, coverage: ${cov:-?} edges, corpus: $(find "$corpus" -type f | wc -l) inputs"
done
exit "$status"
