#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 60) from the committed seeds.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]. Needs cargo-fuzz (installed here if missing); runs on
# stable Rust through RUSTC_BOOTSTRAP=1. A crash fails the run and leaves the input under
# fuzz/artifacts/TARGET/: turn it into a regression test next to the code it broke.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(handshake frames client_protocol topics ndjson_batch payload auth)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
export RUSTC_BOOTSTRAP=1

cargo fuzz build -O
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  printf 'fuzz %-16s %ss ... ' "$t" "$seconds"
  if out=$(cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$seconds" 2>&1); then
    echo "ok ($(printf '%s\n' "$out" | grep -Eo 'Done [0-9]+ runs' | tail -1))"
  else
    echo "CRASH"
    printf '%s\n' "$out" | tail -40
    failed=$((failed + 1))
  fi
done
echo "fuzz: $(( ${#targets[@]} - failed )) passed, $failed failed"
[ "$failed" -eq 0 ]
