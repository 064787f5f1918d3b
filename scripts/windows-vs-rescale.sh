#!/usr/bin/env bash
# Sliding windows against the rescale on the long synthetic preset (THUMOS14-like: 2-4 minute
# videos with ~23 actions of 1.5-4 s each), with the same features and the same head:
#   synth --preset long -> pretrain a tiny encoder on its clips -> extract at a stride of 8 frames
#   (0.8 s) -> train-head twice: whole videos rescaled to L = 100 (the ActivityNet way), and
#   windows of 32 snippets every 16 (the G-TAD THUMOS14 way), the same number of optimizer steps
#   -> detect -> eval at THUMOS14's thresholds 0.3:0.1:0.7.
# Each arm is scored twice: with the run's own video classifier, and with the ground truth's
# video-level classes (the same for both arms, so the difference is localization alone).
# Usage: scripts/windows-vs-rescale.sh [OUT [SEED]]   (default runs/windows-vs-rescale, seed 0)
# LOFI=path/to/lofi uses that binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/windows-vs-rescale}
SEED=${2:-0}
if [ -z "${LOFI:-}" ]; then
    scripts/setup.sh
    cargo build --release --locked -q -p lofi
    LOFI=target/release/lofi
fi
D=$OUT/seed-$SEED
mkdir -p "$D"
head_arch='[head]
hidden = 16
stem_groups = 4
k = 3
groups = 4
width_per_group = 4
num_samples = 8
context_samples = 2
extend_ratio = 0.5
map_hidden = 32
map_channels = 16
map_kernel = 1
max_duration = 8'
# 15 training videos: 15 x 18 = 270 steps of one video; the windows arm cuts about 200 training
# windows, 6 epochs of batch 4 are a similar number of steps (312 for seed 0).
printf 'snippets = 100\nbatch_size = 1\nepochs = 18\nlr_step_epochs = 18\nvalidate_every = 18\nseed = %s\n%s\n' \
    "$SEED" "$head_arch" > "$D/rescale.toml"
printf 'snippets = 32\nbatch_size = 4\nepochs = 6\nlr_step_epochs = 6\nvalidate_every = 6\nseed = %s\n[temporal]\nmode = "windows"\nwindow_stride = 16\n%s\n' \
    "$SEED" "$head_arch" > "$D/windows.toml"

[ -f "$D/data/ground_truth.json" ] || "$LOFI" synth --out "$D/data" --preset long --seed "$SEED"
[ -f "$D/pretrain/encoder.bpk" ] ||
    "$LOFI" pretrain --data "$D/data" --out "$D/pretrain" --preset tiny --epochs 3
[ -f "$D/features/index.json" ] ||
    "$LOFI" extract --ground-truth "$D/data/ground_truth.json" --videos "$D/data/videos" \
        --out "$D/features" --encoder "$D/pretrain/encoder.bpk" --depth 18 --base-width 4 \
        --size 64 --stride-frames 8
# The ground truth's video-level classes as a class-score file (share of annotated time).
python3 - "$D/data/ground_truth.json" "$D/gt_classes.json" <<'EOF'
import json, sys
db = json.load(open(sys.argv[1]))["database"]
classes = sorted({a["label"] for v in db.values() for a in v["annotations"]})
results = {}
for vid, v in db.items():
    s = [0.0] * len(classes)
    for a in v["annotations"]:
        s[classes.index(a["label"])] += a["segment"][1] - a["segment"][0]
    t = max(sum(s), 1e-9)
    results[vid] = [x / t for x in s]
json.dump({"class": classes, "results": results}, open(sys.argv[2], "w"))
EOF
for arm in rescale windows; do
    [ -f "$D/$arm/head.json" ] ||
        "$LOFI" train-head --features "$D/features" --ground-truth "$D/data/ground_truth.json" \
            --out "$D/$arm" --config "$D/$arm.toml"
    "$LOFI" detect --head "$D/$arm" --features "$D/features" \
        --ground-truth "$D/data/ground_truth.json" --out "$D/$arm/detections.json"
    "$LOFI" detect --head "$D/$arm" --features "$D/features" \
        --ground-truth "$D/data/ground_truth.json" --out "$D/$arm/detections_gt_classes.json" \
        --class-scores "$D/gt_classes.json"
    for det in detections detections_gt_classes; do
        echo "== $arm, $det (seed $SEED)"
        "$LOFI" eval detection --ground-truth "$D/data/ground_truth.json" \
            --predictions "$D/$arm/$det.json" --tiou 0.3:0.7:5 | grep -A1 '^tIoU'
    done
done
