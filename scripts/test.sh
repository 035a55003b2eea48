#!/usr/bin/env bash
# Installs what the tests need (idempotent) and runs the whole test suite.
# Usage: ./scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# One build cache outside the clone, reused by every run on this machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/switchboard/target}"

if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed; install the Rust toolchain (rustup) first" >&2
  exit 1
fi

cargo test --workspace --locked "$@"
