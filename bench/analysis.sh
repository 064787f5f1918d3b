#!/usr/bin/env bash
# Benchmarks DETAD's error analysis (lofi-eval's analyze_detection, what `lofi eval detection
# --analysis` runs) at ActivityNet-1.3 validation scale: 4,728 videos x 100 detections, written
# once into target/anet-analysis by test-tools/make_anet_scale.py (deterministic).
set -euo pipefail
cd "$(dirname "$0")/.."
data="$PWD/target/anet-analysis"
if [ ! -f "$data/detections.json" ]; then
  mkdir -p "$data"
  python3 test-tools/make_anet_scale.py --out "$data" --videos 4728 --per-video 100
fi
cargo bench --locked -p lofi-eval --bench analysis_scale -- "$data"
