#!/usr/bin/env bash
# Every check tickwire has, with its own set-up: formatting, lints, unit and integration tests,
# doc tests, and the Autobahn conformance suite against the echo server. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --all-targets -- -D warnings

step "cargo test (unit, integration, doc tests)"
cargo test --all-targets
cargo test --doc

step "Autobahn TestSuite (kosoku) against examples/echo_server"
tests/autobahn/run.sh

step "fuzz targets, a short run of each (fuzz/run.sh 60 for the documented minute)"
fuzz/run.sh 10
