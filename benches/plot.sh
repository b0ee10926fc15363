#!/usr/bin/env bash
# Runs the fan-out sweep and plots it to docs/fanout.png (matplotlib in a venv under target/).
# Usage: benches/plot.sh [--quick] [other fanout flags, e.g. --servers tickwire,uws]
# PLOT_OUT=FILE writes the picture there instead of docs/fanout.png (the CSV is always
# target/fanout/sweep.csv).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/target/plot-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'matplotlib==3.10.8'
fi
csv="$root/target/fanout/sweep.csv"
cd "$root"
cargo bench --bench fanout -- --sweep --csv "$csv" "$@"
"$venv/bin/python" "$root/benches/plot_fanout.py" "$csv" "${PLOT_OUT:-$root/docs/fanout.png}"
