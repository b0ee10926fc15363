#!/usr/bin/env bash
# Runs the Autobahn TestSuite cases (through the PyPI package kosoku) against
# examples/echo_server.rs: every case, 12.* and 13.* (permessage-deflate) included.
# Usage: tests/autobahn/run.sh [CASE-GLOB...]   e.g. tests/autobahn/run.sh '6.*' '9.1.*'
# Makes its own venv under target/, starts the server on a free port, stops it at the end, and
# fails on any FAILED case or any non-OK case not listed in expected-non-ok.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$root/target/autobahn-venv"
report="$root/target/autobahn-report"

if [ ! -x "$venv/bin/kosoku" ]; then
  echo "autobahn: installing kosoku into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'kosoku==0.1.0'
fi

cargo build --release --quiet --example echo_server --manifest-path "$root/Cargo.toml"

log=$(mktemp)
"$root/target/release/examples/echo_server" 127.0.0.1:0 16777216 >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT

addr=""
for _ in $(seq 1 100); do
  addr=$(sed -n 's#^listening on ws://##p' "$log" | head -n 1)
  [ -n "$addr" ] && break
  sleep 0.1
done
if [ -z "$addr" ]; then
  echo "autobahn: echo_server did not start:"; cat "$log"; exit 1
fi

args=(-m fuzzingclient -o "$report" -p 2)
for glob in "$@"; do args+=(-i "$glob"); done
rm -rf "$report"
echo "autobahn: running kosoku against ws://$addr"
timeout 1200 "$venv/bin/kosoku" "${args[@]}" "$addr" | tail -n 2

"$venv/bin/python" "$here/check_report.py" "$report/index.json" "$here/expected-non-ok.txt"
