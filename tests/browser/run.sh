#!/usr/bin/env bash
# The quote board and the JavaScript client end to end in Debian's headless Chromium, against
# real brokers. Installs chromium (Debian's package, never a downloaded browser) and
# playwright-core (npm, pinned in package-lock.json) if missing, builds the release binary, and
# runs board.test.mjs (the page), client.test.mjs (the library as served at /tickwire.js) and
# tls.test.mjs (https://, wss:// and a token; needs openssl).
# UPDATE_SCREENSHOT=1 refreshes docs/board.png.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ ! -x /usr/bin/chromium ]; then
  echo "browser: installing Debian's chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium </dev/null >/dev/null
fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --silent)
fi
cargo build --release --quiet --bin tickwire --manifest-path "$root/Cargo.toml"
cd "$here"
# One file at a time: each starts its own brokers and browser, and the machine has two cores.
timeout 400 node --test --test-concurrency=1 --test-reporter=spec board.test.mjs client.test.mjs tls.test.mjs
