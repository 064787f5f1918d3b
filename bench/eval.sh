#!/usr/bin/env bash
# Benchmarks `lofi eval` against the numpy peer (test-tools/anet_numpy.py) at ActivityNet scale.
# Makes a virtual environment with numpy under target/ on first use (not needed for CI or tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
venv="$PWD/target/bench-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" 2>/dev/null || {
    apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"
  }
  "$venv/bin/pip" install -q numpy
fi
LOFI_BENCH_PYTHON="$venv/bin/python" cargo bench --locked -p lofi --bench eval_scale
