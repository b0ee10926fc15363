#!/usr/bin/env bash
# Runs the fan-out sweep and plots it to docs/fanout.png (matplotlib in a venv under target/).
# Usage: benches/plot.sh [--quick] [other fanout flags, e.g. --servers tickwire,uws]
# PLOT_OUT=FILE writes the picture there instead of docs/fanout.png. PLOT_RUNS=N runs the sweep
# N times (target/fanout/sweep.csv, sweep-2.csv, ...) and plots the best run of each point.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/target/plot-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'matplotlib==3.10.8'
fi
cd "$root"
csvs=()
for ((i = 1; i <= ${PLOT_RUNS:-1}; i++)); do
  if [ "$i" -eq 1 ]; then csv="$root/target/fanout/sweep.csv"; else csv="$root/target/fanout/sweep-$i.csv"; fi
  cargo bench --bench fanout -- --sweep --csv "$csv" "$@"
  csvs+=("$csv")
done
"$venv/bin/python" "$root/benches/plot_fanout.py" "${csvs[@]}" "${PLOT_OUT:-$root/docs/fanout.png}"
