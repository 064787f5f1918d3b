#!/usr/bin/env bash
# Benchmarks the Python package (crates/lofi-py) at ActivityNet scale against the numpy peer
# (test-tools/anet_numpy.py), both in one Python process pinned to one core: lofi from the JSON
# files, from the files already loaded as dicts, and from DataFrames with the official columns.
# Installs the package into target/bench-py-venv and writes the input into target/anet-scale on
# first use (not needed for CI or tests). Results: BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh
venv="$PWD/target/bench-py-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install -q ./crates/lofi-py pandas
data="$PWD/target/anet-scale"
if [ ! -f "$data/detections.json" ]; then
  python3 test-tools/make_anet_scale.py --out "$data"
fi
pin=()
if command -v taskset >/dev/null 2>&1; then
  pin=(taskset -c 0)
fi
"${pin[@]}" "$venv/bin/python" bench/python/eval_scale.py "$data" "${RUNS:-3}"
