#!/usr/bin/env bash
# The memory planner's view of one LoFi step (TSM-R18 + G-TAD, 1 frame per snippet) at full, S,
# T and ST fidelity on the CPU, plus the tiny demo configuration. Prints Markdown rows for
# BENCHMARKS.md. The step alone (one process per fidelity, with a PyTorch peer) is
# lofi-model's bench: bench/model/run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
budget="${BUDGET:-24GiB}"
echo "## Paper sizes (100 x 224 full), budget $budget"
cargo bench -q -p lofi-train --bench plan_step -- --budget "$budget"
echo
echo "## Tiny demo sizes (TrainConfig::tiny: 16 x 64 full, TSM-R18 width 4, tiny G-TAD)"
cargo bench -q -p lofi-train --bench plan_step -- --preset tiny --budget 1GiB
