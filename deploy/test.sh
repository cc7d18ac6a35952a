#!/usr/bin/env bash
# The test command: installs what is missing, builds every binary, runs every test, then
# runs the README's lab commands verbatim (deploy/readme-smoke.sh).
#   bash deploy/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/setup.sh --tests
echo "test: formatting (cargo fmt --check) and shell scripts (shellcheck)"
cargo fmt --all --check
find deploy benches -name '*.sh' -exec shellcheck {} +
echo "test: building"
cargo build --workspace --bins --tests --quiet
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast --test-threads 1 --retries 0
else
    cargo test --workspace --no-fail-fast -- --test-threads 1
fi
echo "test: the README's lab commands"
bash deploy/readme-smoke.sh
