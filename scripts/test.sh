#!/usr/bin/env bash
# The test command of the README: sets the machine up, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --locked "$@"
