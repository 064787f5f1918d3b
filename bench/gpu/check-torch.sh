#!/usr/bin/env bash
# Device check of the LibTorch route (issue 25): lofi on burn's LibTorch backend
# (`--device torch-cuda`) beside PyTorch's own step (bench/gpu/torch_step.py) on the same card,
# in one call of under 8 minutes. Runs ON the device machine from the repository root, with
# `.gpu-torch/` carried (made by bench/gpu/prepare-torch.sh on a build machine: lofi and gpu_step
# built against libtorch 2.11.0's CUDA variant, xz-compressed, and the minimal FFmpeg for the
# demo). Needs no Rust and no network: libtorch, cuDNN and the rest come from the machine's own
# PyTorch (`python3 -c 'import torch'`), which must be 2.11.0.
#
# Order (each part's numbers are written the moment they exist, so a cut-off run still returns
# what it measured; every part runs under `timeout min(its cap, time left)`):
#   probe     (<= 90 s) versions, missing libraries, `lofi --device DEV device`, one tiny step on
#             DEV against the same step on the CPU (flex): losses within 1e-3
#   f32       full and T fidelity, bridges on, and torch_step.py at the same fidelities
#   f32-more  S and ST (both)
#   bf16      T and full in bf16 (both)
#   nobridge  T with LOFI_TORCH_BRIDGE=0 (burn's generic conv backward and BatchNorm)
#   autotune  T with LOFI_CUDNN_BENCHMARK=1 (cuDNN autotuning on)
#   extract   frames/s of the encoder's forward pass at full fidelity (both)
#   demo      `lofi --device DEV demo --size tiny` end to end
# For every gpu_step run: the time from process start to the end of step 1
# (`process_to_first_step_s`), the steady step (median), and nvidia-smi's peak memory and mean
# utilisation over the run (sampled every 200 ms).
#
# Output: $OUT/results.jsonl (one JSON object per measurement), $OUT/table.md, $OUT/check.log.
#
# Dry run on a machine without a GPU (the CPU variant; what the project's tests do):
#   DEV=torch LOFI_TORCH_LIB=target/libtorch-2.11.0/torch/lib TORCH_DEVICE=cpu \
#   BURN_ARGS="--base-width 4 --tiny-head" FIDELITY_MAP="full=4x32 t=4x48 s=8x24 st=6x32" \
#   STEPS=2 WARMUP=1 DEMO_ROWS=frozen DEMO_CAP_S=200 OUT=/tmp/check bash bench/gpu/check-torch.sh
#
# Knobs: DEV (default torch-cuda:0), BUDGET_S (default 450), STEPS (10), WARMUP (2), BURN_ARGS
# and TORCH_ARGS (extra options of gpu_step / torch_step.py), FIDELITY_MAP (rename fidelities to
# LxS for a dry run), LOFI_TORCH_LIB (libtorch's lib folder when python3 has no torch), DEMO_ROWS
# (default all six; `lofi demo --rows`), DEMO_CAP_S (default 120), PARTS
# (default: all of the above), TORCH_DEVICE (default cuda), EXPECT_TORCH (default 2.11.0).
set -u
OUT=${OUT:-/tmp/lofi-torch-check}
mkdir -p "$OUT"
LOG="$OUT/check.log"
RES="$OUT/results.jsonl"
: >"$RES"
exec > >(tee -a "$LOG") 2>&1
DEV=${DEV:-torch-cuda:0}
BUDGET_S=${BUDGET_S:-450}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-2}
BURN_ARGS=${BURN_ARGS:-}
TORCH_ARGS=${TORCH_ARGS:-}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
EXPECT_TORCH=${EXPECT_TORCH:-2.11.0}
DEMO_CAP_S=${DEMO_CAP_S:-120}
DEMO_ROWS=${DEMO_ROWS:-}
PARTS=" ${PARTS:-probe f32 f32-more bf16 nobridge autotune extract demo} "
WORK=${WORK:-/tmp/lofi-torch-work}
T0=$(date +%s)
say() { echo "[check-torch +$(($(date +%s) - T0))s] $*"; }
left() { echo $((BUDGET_S - ($(date +%s) - T0))); }
# A cap no longer than the time left; empty when under 10 s are left (the part is skipped).
cap() {
  local c=$1 l
  l=$(left)
  [ "$l" -lt "$c" ] && c=$l
  [ "$c" -ge 10 ] && echo "$c"
}
record() { echo "$1" >>"$RES"; }
skip() { say "skipped $1: $2"; record "{\"part\":\"$1\",\"skipped\":\"$2\"}"; }
fid() { # a fidelity's name -> the LxS (or name) gpu_step and torch_step.py get
  local f
  for f in ${FIDELITY_MAP:-}; do
    [ "${f%%=*}" = "$1" ] && { echo "${f#*=}"; return; }
  done
  echo "$1"
}

# --- The binaries and libtorch ------------------------------------------------------------------
mkdir -p "$WORK"
for b in lofi gpu_step; do
  if [ -f ".gpu-torch/$b.xz" ]; then
    xz -dc ".gpu-torch/$b.xz" >"$WORK/$b" && chmod +x "$WORK/$b"
  elif [ -x ".gpu-torch/$b" ]; then
    cp ".gpu-torch/$b" "$WORK/$b"
  else
    say "no .gpu-torch/$b(.xz): run bench/gpu/prepare-torch.sh and carry .gpu-torch"
    exit 2
  fi
done
if [ -f .gpu-torch/lofi-libs.tar.xz ]; then
  mkdir -p "$WORK/lib" && xz -dc .gpu-torch/lofi-libs.tar.xz | tar -xf - -C "$WORK/lib"
fi
PY=${PYTHON:-python3}
HAVE_TORCH=0
if "$PY" -c 'import torch' 2>/dev/null; then HAVE_TORCH=1; fi
if [ -z "${LOFI_TORCH_LIB:-}" ] && [ "$HAVE_TORCH" = 1 ]; then
  LOFI_TORCH_LIB=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
fi
if [ -z "${LOFI_TORCH_LIB:-}" ] || [ ! -f "$LOFI_TORCH_LIB/libtorch_cpu.so" ]; then
  say "STOP: no libtorch found (python3 has no torch, and LOFI_TORCH_LIB is not a folder with libtorch_cpu.so)"
  exit 3
fi
export LOFI_TORCH_LIB
VERSION=$(sed -n "s/^__version__ *= *['\"]\\([^'\"]*\\)['\"].*/\\1/p" "$LOFI_TORCH_LIB/../version.py" 2>/dev/null)
if [ "${VERSION%%+*}" != "$EXPECT_TORCH" ]; then
  say "STOP: this machine's torch is '${VERSION:-unknown}' ($LOFI_TORCH_LIB), lofi was built against $EXPECT_TORCH: rebuild with scripts/libtorch.sh at that version"
  record "{\"part\":\"probe\",\"error\":\"torch version ${VERSION:-unknown} != $EXPECT_TORCH\"}"
  exit 3
fi
say "torch $VERSION at $LOFI_TORCH_LIB; device $DEV"
# lofi with the carried FFmpeg first; scripts/lofi-torch puts LOFI_TORCH_LIB in front of that
# and names any library still missing (and stops) instead of the loader's error.
run_lofi() { LD_LIBRARY_PATH="$WORK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" scripts/lofi-torch "$WORK/lofi" "$@"; }
for b in gpu_step lofi; do
  missing=$(LD_LIBRARY_PATH="$LOFI_TORCH_LIB:$WORK/lib" ldd "$WORK/$b" | awk '/not found/ {print $1}' | tr '\n' ' ')
  if [ -n "$missing" ]; then
    say "STOP: $b is missing ${missing% } (searched $LOFI_TORCH_LIB and $WORK/lib)"
    record "{\"part\":\"probe\",\"error\":\"$b is missing ${missing% }\"}"
    exit 4
  fi
done

SMI=0
if nvidia-smi -L >/dev/null 2>&1; then SMI=1; nvidia-smi -L; fi
# Runs gpu_step with nvidia-smi sampling beside it; adds the launch time, the sampled peak
# memory and mean utilisation to each JSON line it prints, tagged with the part.
step_run() {
  local part=$1 c=$2
  shift 2
  local smi="$WORK/smi-$part.csv" pid="" launch lines
  : >"$smi"
  if [ "$SMI" = 1 ]; then
    nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits -lms 200 >"$smi" &
    pid=$!
  fi
  launch=$(date +%s.%N)
  lines=$(timeout -k 5 "$c" env "$@" 2>>"$LOG")
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ -n "$pid" ] && wait "$pid" 2>/dev/null
  echo "$lines" | "$PY" -c '
import json, sys
part, launch, smi = sys.argv[1], float(sys.argv[2]), sys.argv[3]
mem, util = [], []
for l in open(smi):
    try:
        m, u = (float(v) for v in l.split(","))
        mem.append(m); util.append(u)
    except ValueError:
        pass
for l in sys.stdin:
    l = l.strip()
    if not l.startswith("{"):
        continue
    r = json.loads(l)
    r["part"] = part
    end = r.get("first_step_end_unix")
    if end:
        r["process_to_first_step_s"] = round(end - launch, 3)
    r["smi_peak_mib"] = max(mem) if mem else None
    r["smi_mean_util"] = round(sum(util) / len(util), 1) if util else None
    print(json.dumps(r))
' "$part" "$launch" "$smi" >>"$RES"
}
burn() { # part cap fidelities precision mode [VAR=value...]
  local part=$1 c fids=$3 prec=$4 mode=$5 f list=""
  c=$(cap "$2") || { skip "$part" "out of time"; return; }
  shift 5
  for f in $fids; do list="$list${list:+,}$(fid "$f")"; done
  say "$part: $* gpu_step --device $DEV --fidelity $list --precision $prec --mode $mode (cap $c s)"
  step_run "$part" "$c" "$@" scripts/lofi-torch "$WORK/gpu_step" --device "$DEV" --fidelity "$list" \
    --precision "$prec" --mode "$mode" --warmup "$WARMUP" --steps "$STEPS" $BURN_ARGS
}
torch() { # part cap fidelities precision [mode]
  local part=$1 c fids=$3 prec=$4 mode=${5:-step} f list=""
  [ "$HAVE_TORCH" = 1 ] || { skip "$part-torch" "python3 has no torch"; return; }
  c=$(cap "$2") || { skip "$part-torch" "out of time"; return; }
  for f in $fids; do list="$list${list:+,}$(fid "$f")"; done
  say "$part: torch_step.py --device $TORCH_DEVICE --fidelity $list --precision $prec --mode $mode"
  timeout -k 5 "$c" "$PY" bench/gpu/torch_step.py --device "$TORCH_DEVICE" --fidelity "$list" \
    --precision "$prec" --mode "$mode" --warmup "$WARMUP" --steps "$STEPS" $TORCH_ARGS 2>>"$LOG" |
    "$PY" -c 'import json,sys
for l in sys.stdin:
    if l.startswith("{"):
        r = json.loads(l); r["part"] = sys.argv[1]; print(json.dumps(r))' "$part" >>"$RES"
}

# --- Parts --------------------------------------------------------------------------------------
if [[ $PARTS == *" probe "* ]]; then
  say "probe: lofi --device $DEV device"
  if c=$(cap 30); then
    msg=$(timeout -k 5 "$c" bash -c "$(declare -f run_lofi); WORK='$WORK' run_lofi --device '$DEV' device" 2>&1)
    rc=$?
    echo "$msg"
    record "$("$PY" -c 'import json,sys; print(json.dumps({"part":"probe","what":"lofi device","rc":int(sys.argv[1]),"output":sys.argv[2]}))' "$rc" "$msg")"
  fi
  # One tiny step on DEV and on the CPU (flex): the same weights and clip, so the same loss.
  for d in "$DEV" cpu; do
    c=$(cap 30) || break
    timeout -k 5 "$c" scripts/lofi-torch "$WORK/gpu_step" --device "$d" --fidelity 4x32 --base-width 4 \
      --tiny-head --init-on-cpu --warmup 0 --steps 1 2>>"$LOG" | sed "s/^{/{\"part\":\"probe\",/" >>"$RES"
  done
  "$PY" -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if "\"probe\"" in l and "\"loss\"" in l]
loss = {r["device"]: r["loss"] for r in rows}
dev, cpu = loss.get(sys.argv[2]), loss.get("cpu")
ok = dev is not None and cpu is not None and abs(dev - cpu) <= 1e-3 * max(1.0, abs(cpu))
print(json.dumps({"part": "probe", "what": "one step against the CPU", "device_loss": dev, "cpu_loss": cpu, "within_1e-3": ok}))
' "$RES" "$DEV" | tee -a "$RES"
fi
if [[ $PARTS == *" f32 "* ]]; then
  burn f32 150 "t full" f32 step
  torch f32 90 "t full" f32
fi
if [[ $PARTS == *" f32-more "* ]]; then
  burn f32-more 90 "s st" f32 step
  torch f32-more 60 "s st" f32
fi
if [[ $PARTS == *" bf16 "* ]]; then
  burn bf16 90 "t full" bf16 step
  torch bf16 60 "t full" bf16
fi
[[ $PARTS == *" nobridge "* ]] && burn nobridge 60 t f32 step LOFI_TORCH_BRIDGE=0
[[ $PARTS == *" autotune "* ]] && burn autotune 60 t f32 step LOFI_CUDNN_BENCHMARK=1
if [[ $PARTS == *" extract "* ]]; then
  burn extract 60 full f32 extract
  torch extract 45 full f32 extract
fi
if [[ $PARTS == *" demo "* ]]; then
  if c=$(cap "$DEMO_CAP_S"); then
    say "demo: lofi --device $DEV demo --size tiny (cap $c s)"
    t=$(date +%s)
    timeout -k 5 "$c" bash -c "$(declare -f run_lofi); WORK='$WORK' run_lofi --device '$DEV' demo --size tiny --seeds 1 ${DEMO_ROWS:+--rows $DEMO_ROWS} --out '$WORK/demo' --json '$WORK/demo.json' --fresh" >>"$LOG" 2>&1
    rc=$?
    record "{\"part\":\"demo\",\"rc\":$rc,\"seconds\":$(($(date +%s) - t)),\"result\":$(cat "$WORK/demo.json" 2>/dev/null || echo null)}"
  else
    skip demo "out of time"
  fi
fi

# --- The table ----------------------------------------------------------------------------------
"$PY" - "$RES" >"$OUT/table.md" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| part | impl | precision | fidelity | step (ms, median) | process start to step 1 end (s) | peak (nvidia-smi MiB) | util % | loss |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if "step_s_median" in r:
        print("| {} | {} | {} | {} | {:.1f} | {} | {} | {} | {} |".format(
            r.get("part"), "{} {}".format(r.get("impl"), r.get("device", "")).strip(),
            r.get("precision"), r.get("fidelity"),
            1e3 * r["step_s_median"], r.get("process_to_first_step_s", ""),
            r.get("smi_peak_mib") or "", r.get("smi_mean_util") or "", r.get("loss", "")))
for r in rows:
    if "skipped" in r or "error" in r or r.get("part") in ("probe", "demo") and "step_s_median" not in r:
        print("\n- " + json.dumps(r)[:300])
EOF
cat "$OUT/table.md"
say "done ($(left) s of the budget left)"
