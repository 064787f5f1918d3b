#!/usr/bin/env bash
# One training step of TSM-R18 + G-TAD at full fidelity and at each LoFi preset, in lofi-model
# (burn, flex CPU backend) and in PyTorch when a python with torch is given; one process per
# configuration so each peak-memory figure is its own. Not run in CI.
#
# Usage: bench/model/run.sh [python-with-torch] [steps]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${1:-}"
STEPS="${2:-2}"
cargo bench -p lofi-model --bench train_step --no-run
for cfg in "100 224 full" "100 112 S-LoFi" "25 224 T-LoFi" "50 158 ST-LoFi"; do
  set -- $cfg
  echo "== $3"
  cargo bench -q -p lofi-model --bench train_step -- --snippets "$1" --size "$2" --steps "$STEPS"
  if [ -n "$PY" ]; then
    "$PY" bench/model/train_step.py --snippets "$1" --size "$2" --steps "$STEPS" --threads "$(nproc)"
  fi
done
