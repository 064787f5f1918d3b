#!/usr/bin/env bash
# The first command of the README's quick start: sets the machine up, builds lofi (release) and
# runs `lofi demo`: the whole LoFi method on the built-in synthetic benchmark, ending with the
# paper's table in shape and an HTML report (runs/demo/report.html). Extra arguments go to
# `lofi demo` (e.g. --fresh, --size benchmark, --json table.json).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release --locked -q -p lofi -- demo --out "${LOFI_DEMO_OUT:-runs/demo}" "$@"
