#!/usr/bin/env bash
# The JavaScript client's unit tests (node --test, a fake WebSocket and clock) and the type check
# of tickwire.d.ts (tsc), with their own set-up: the dev dependencies pinned in package-lock.json.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x node_modules/.bin/tsc ]; then
  npm ci --no-audit --no-fund --silent </dev/null
fi
npm test --silent
npm run typecheck --silent
