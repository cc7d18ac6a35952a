#!/usr/bin/env bash
# Line coverage of the HA decision (crates/agent/src/ha/decide.rs and the sentences in
# action.rs) by its own tests: the decision table, the property test and `remember`.
#   bash benches/decide-coverage.sh
# Needs cargo-tarpaulin (installed from crates.io on first use, a few minutes; the
# ptrace engine, so no llvm-tools). Prints tarpaulin's per-file lines and the total.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo tarpaulin --version >/dev/null 2>&1; then
  cargo install cargo-tarpaulin --locked
fi
cargo tarpaulin -p raftgres-agent --lib --engine ptrace --out Stdout \
  --target-dir "${CARGO_TARGET_DIR:-target}/tarpaulin" \
  --include-files crates/agent/src/ha/decide.rs --include-files crates/agent/src/ha/action.rs \
  -- decide 2>&1 | grep -E '^\|\| crates/|coverage,'
