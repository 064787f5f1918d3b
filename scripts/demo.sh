#!/usr/bin/env bash
# The first command of the README's quick start: sets the machine up, builds lofi and runs it on
# the built-in example. Until `lofi demo` exists this evaluates the shipped example detections
# and proposals with the official ActivityNet protocol and writes SVG plots.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p lofi
lofi=target/release/lofi
out=${LOFI_DEMO_OUT:-runs/example}
mkdir -p "$out"
"$lofi" eval detection --ground-truth examples/eval/ground_truth.json \
  --predictions examples/eval/detections.json --plot "$out"
echo
"$lofi" eval proposals --ground-truth examples/eval/ground_truth.json \
  --proposals examples/eval/proposals.json --plot "$out"
echo
echo "Plots: $out/precision_recall.svg, $out/recall_vs_proposals.svg"
