#!/usr/bin/env bash
# Runs the commands of the README's recipes (ActivityNet-1.3, THUMOS14), in order, on synthetic
# stand-ins of both datasets' layouts: `lofi synth` videos under the recipes' file names, a
# THUMOS14-style JSON (subsets Validation/Test, label_id, fps, segment(frames)), an ActivityNet
# JSON with one video missing from the download and external class scores. Network and window
# sizes are shrunk so that it runs on a CPU in a few minutes (tiny presets, and for THUMOS14 two
# small config files with the thumos14 preset's stride / windows layout). Not part of CI.
#
# Usage: scripts/recipes-check.sh [WORK_DIR]   (LOFI=path/to/lofi to use another binary)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${LOFI:-}" ]; then
  (cd "$ROOT" && cargo build -q -p lofi)
  LOFI="$ROOT/target/debug/lofi"
fi
W=${1:-/tmp/lofi-recipes-check}
rm -rf "$W"; mkdir -p "$W"; cd "$W"
lofi() { echo "+ lofi $*" >&2; "$LOFI" "$@"; }

# ---- THUMOS14 stand-in: synth tiny renamed to THUMOS14's layout.
"$LOFI" synth --out syn --preset tiny --seed 4 >/dev/null 2>&1
mkdir -p thumos && cp -r syn/videos thumos/videos
python3 - <<'PY'
import json
gt=json.load(open("syn/ground_truth.json"))
db={}
labels=sorted({a["label"] for v in gt["database"].values() for a in v["annotations"]})
for vid,e in gt["database"].items():
    e=dict(e); e["subset"]={"training":"Validation","validation":"Test"}[e["subset"]]
    e["fps"]=10.0
    e["annotations"]=[dict(a, **{"label_id": labels.index(a["label"]), "segment(frames)": [round(a["segment"][0]*10), round(a["segment"][1]*10)]}) for a in e["annotations"]]
    db[vid]=e
json.dump({"database":db},open("thumos/thumos14.json","w"))
PY
# The tiny G-TAD of the tiny preset, anchors up to 8 snippets (the thumos14 preset: 64 of 256).
HEAD_TABLE='[head]
hidden = 16
stem_groups = 4
k = 3
groups = 4
width_per_group = 4
num_samples = 8
context_samples = 2
map_hidden = 32
map_channels = 16
map_kernel = 1
max_duration = 8'
cat > tiny_thumos_train.toml <<T
epochs = 1
batch_size = 4
[full]
snippets = 16
size = 64
[schedule]
short_cycle_batches = 1
[sampling]
mode = "stride"
stride_frames = 5
[temporal]
mode = "windows"
window_stride = 8
[encoder]
depth = 18
base_width = 4
$HEAD_TABLE
T
cat > tiny_thumos_head.toml <<T
snippets = 16
epochs = 2
batch_size = 4
train_subset = "Validation"
val_subset = "Test"
validate_every = 0
[temporal]
mode = "windows"
window_stride = 8
$HEAD_TABLE
[detect]
soft_nms_sigma = 0.46
T
lofi probe thumos/videos --ground-truth thumos/thumos14.json > thumos/probe.txt
lofi pretrain --ground-truth thumos/thumos14.json --videos thumos/videos --out runs/thumos/acp --preset tiny --epochs 1
lofi train --ground-truth thumos/thumos14.json --videos thumos/videos --encoder runs/thumos/acp \
    --out runs/thumos/lofi --config tiny_thumos_train.toml --schedule long-cycle
lofi extract --ground-truth thumos/thumos14.json --videos thumos/videos \
    --encoder runs/thumos/lofi --out runs/thumos/features --stride-frames 5
lofi train-head --features runs/thumos/features --ground-truth thumos/thumos14.json \
    --out runs/thumos/head --config tiny_thumos_head.toml
lofi detect --head runs/thumos/head --features runs/thumos/features \
    --ground-truth thumos/thumos14.json --subset Test --out runs/thumos/detections.json
lofi eval detection --ground-truth thumos/thumos14.json --predictions runs/thumos/detections.json \
    --preset thumos14 --drop-disputed --drop-ambiguous

# ---- ActivityNet stand-in, one video missing from the download.
"$LOFI" synth --out syn2 --preset tiny --seed 5 >/dev/null 2>&1
mkdir -p anet && cp -r syn2/videos anet/videos
python3 - <<'PY'
import json,os
gt=json.load(open("syn2/ground_truth.json"))
json.dump(gt,open("anet/activity_net.v1-3.min.json","w"))
labels=sorted({a["label"] for v in gt["database"].values() for a in v["annotations"]})
res={vid:[1.0 if any(a["label"]==l for a in e["annotations"]) else 0.0 for l in labels] for vid,e in gt["database"].items()}
json.dump({"class":labels,"results":res},open("anet/cuhk_val_simp_share.json","w"))
val=sorted(v for v,e in gt["database"].items() if e["subset"]=="validation")
for f in os.listdir("anet/videos"):
    if f.startswith(val[0]): os.remove(os.path.join("anet/videos",f))
PY
lofi probe anet/videos --ground-truth anet/activity_net.v1-3.min.json > anet/probe.txt || echo "(probe: non-zero, a video is missing, as expected)"
lofi pretrain --ground-truth anet/activity_net.v1-3.min.json --videos anet/videos \
    --out runs/anet/acp --skip-missing-videos --preset tiny --epochs 1
lofi train --ground-truth anet/activity_net.v1-3.min.json --videos anet/videos \
    --encoder runs/anet/acp --out runs/anet/lofi --schedule long-cycle --skip-missing-videos --preset tiny --epochs 1
lofi extract --ground-truth anet/activity_net.v1-3.min.json --videos anet/videos \
    --encoder runs/anet/lofi --out runs/anet/features --skip-missing-videos
lofi train-head --features runs/anet/features --ground-truth anet/activity_net.v1-3.min.json \
    --out runs/anet/head --skip-missing-features --preset tiny --epochs 2
lofi detect --head runs/anet/head --features runs/anet/features \
    --ground-truth anet/activity_net.v1-3.min.json --class-scores anet/cuhk_val_simp_share.json \
    --out runs/anet/detections.json --skip-missing-features
lofi eval detection --ground-truth anet/activity_net.v1-3.min.json \
    --predictions runs/anet/detections.json --preset activitynet
echo "RECIPES OK"
