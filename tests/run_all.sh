#!/usr/bin/env bash
# Every check tickwire has, with its own set-up: the Debian packages the tests need, formatting,
# lints, unit and integration tests (the C/C++ examples under valgrind and ASan, the Redis
# multi-node tests, the soak), doc tests, the Autobahn conformance suite against the echo server,
# the JavaScript client's unit tests and type check, the quote board and the client in headless
# Chromium, and a short run of every fuzz target. CI runs exactly
# this (`.ci/run`), on a fresh clone, in well under 30 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "system packages the tests need (valgrind, a C/C++ toolchain, make, redis-server, openssl, curl)"
missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
# tests/redis_nodes.rs runs several nodes against a real Redis (it starts its own, on a free port).
command -v redis-server >/dev/null || missing+=(redis-server)
command -v make >/dev/null || missing+=(make)
command -v g++ >/dev/null || missing+=(g++)
# tests/entitlements.rs makes RSA keys and tests/tls.rs checks TLS 1.1 is refused with openssl;
# tests/tls.rs fetches the board over https with curl; the browser test makes its certificate.
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" </dev/null
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --all-targets -- -D warnings

step "cargo test (unit, integration, doc tests)"
cargo test --all-targets
cargo test --doc

step "Autobahn TestSuite (kosoku) against examples/echo_server"
tests/autobahn/run.sh

step "the JavaScript client: unit tests and type check (clients/js)"
clients/js/run_tests.sh

step "the quote board and the JavaScript client end to end in headless Chromium"
tests/browser/run.sh

step "fuzz targets, a short run of each (fuzz/run.sh 60 for the documented minute)"
fuzz/run.sh 10
