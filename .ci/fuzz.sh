#!/usr/bin/env bash
# Fuzz every parser of outside bytes for a short, bounded time (issue 17):
# a regression that makes one crash, or break one of its properties, fails
# CI. Long runs are local (docs/fuzzing.md). Installs what it needs: the
# nightly toolchain and a pinned cargo-fuzz.
#
#   bash .ci/fuzz.sh            # every target, FUZZ_SECONDS (20) each
#   FUZZ_SECONDS=60 bash .ci/fuzz.sh ws_framer irc_message
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

CARGO_FUZZ_VERSION=0.13.2
seconds="${FUZZ_SECONDS:-20}"
start=$(date +%s)

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

cd fuzz
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi

# Debug assertions on: an arithmetic overflow is a finding too.
echo "== cargo fuzz build (${#targets[@]} targets)"
cargo +nightly fuzz build --debug-assertions

failed=()
for t in "${targets[@]}"; do
  # A scratch copy of the committed seeds: what the run adds stays out of
  # the repository (a long local run may keep it: docs/fuzzing.md).
  work=$(mktemp -d)
  cp corpus/"$t"/* "$work"/ 2>/dev/null || true
  log=$(mktemp)
  if cargo +nightly fuzz run --debug-assertions "$t" "$work" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
    grep -E 'panicked|ERROR|SUMMARY|Test unit written|Base64' "$log" | head -20 || true
  fi
  runs=$(awk '/^stat::number_of_executed_units:/ { print $2 }' "$log")
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  printf '%-14s %-6s %10s execs  %s\n' "$t" "$status" "${runs:-?}" "$cov"
  rm -rf "$work" "$log"
done

echo "fuzz: ${#targets[@]} targets, $((${#targets[@]} - ${#failed[@]})) ok, $(( $(date +%s) - start )) s in all"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (the crashing input is in fuzz/artifacts/<target>/)"
  exit 1
fi
