#!/usr/bin/env bash
# Device check for issue 6: one LoFi training step (TSM-R18 + G-TAD, 1 video, 1 frame per
# snippet) at full, S, T and ST fidelity on the GPU through burn's wgpu/Vulkan backend, and the
# same step in the machine's PyTorch, printed as one table with ratios and memory per fidelity.
#
# Runs ON the device machine, from the repository root, with `.gpu/` carried (made on a build
# machine by bench/gpu/prepare.sh: the release bench binary, gzipped, and the Vulkan loader .debs).
# Needs no Rust and no network. Order and caps are chosen so that the whole run stays under
# 8 minutes and a slow part costs only its own numbers:
#   1. PyTorch first (f32 without TF32, TF32, bf16 autocast), about 20 s each: always recorded.
#   2. burn in ONE process for all fidelities, cheapest first (t, st, s, full), so the kernels
#      compiled for one fidelity serve the next; each fidelity prints its JSON line as soon as it
#      is done, so a run cut by the cap still reports the fidelities it finished.
#   3. bf16 on Vulkan, which must be refused (burn's wgpu backend has no bf16 arithmetic).
# Output: the table on stdout and in $OUT/table.md, JSON lines in $OUT/results.jsonl, the log in
# $OUT/check.log.
#
# Knobs (environment):
#   FIDELITIES   default "t st s full" (names or LxS)
#   BURN_DEVICE  default vulkan (cpu runs the plumbing on a machine without a GPU)
#   BURN_ARGS    extra gpu_step options (e.g. "--base-width 4 --tiny-head" for a dry run)
#   BURN_CAP_S   the burn process, all fidelities (default 270)
#   AUTOTUNE     cubecl autotune level for burn: minimal (default: the first Vulkan run spent
#                136 s compiling and tuning at one fidelity), balanced, extensive or full
#   TORCH_DEVICE default cuda; TORCH_ARGS extra torch_step.py options; TORCH_CAP_S (default 45)
#   STEPS        timed steps (default 5); SKIP_TORCH=1; SKIP_BURN=1; PYTHON (default python3)
set -u
OUT=${OUT:-/tmp/lofi-gpu-check}
mkdir -p "$OUT"
LOG="$OUT/check.log"
RES="$OUT/results.jsonl"
: >"$RES"
exec > >(tee -a "$LOG") 2>&1
FIDELITIES=${FIDELITIES:-"t st s full"}
BURN_DEVICE=${BURN_DEVICE:-vulkan}
BURN_ARGS=${BURN_ARGS:-}
BURN_CAP_S=${BURN_CAP_S:-270}
AUTOTUNE=${AUTOTUNE:-minimal}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
TORCH_ARGS=${TORCH_ARGS:-}
TORCH_CAP_S=${TORCH_CAP_S:-45}
STEPS=${STEPS:-5}
PY=${PYTHON:-python3}
T0=$(date +%s)
say() { echo "[check +$(($(date +%s) - T0))s] $*"; }

say "host $(uname -m), $(nproc) cores"
CARD=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
say "card: ${CARD:-none found by nvidia-smi}"
echo "{\"impl\":\"card\",\"card\":\"${CARD}\"}" >>"$RES"

# Highest memory.used (MiB) nvidia-smi sees while a command runs, minus the value before it
# (null without nvidia-smi).
SMI_PID=""
smi_start() {
  SMI_BASE=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
  SMI_FILE=$(mktemp)
  if [ -n "$SMI_BASE" ]; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$SMI_FILE" 2>/dev/null &
    SMI_PID=$!
  fi
}
smi_stop() {
  if [ -n "$SMI_PID" ]; then kill "$SMI_PID" 2>/dev/null; wait "$SMI_PID" 2>/dev/null; fi
  SMI_PID=""
  local peak
  peak=$(sort -n "$SMI_FILE" | tail -1)
  rm -f "$SMI_FILE"
  if [ -n "$peak" ] && [ -n "${SMI_BASE:-}" ]; then echo $((peak - SMI_BASE)); else echo null; fi
}

# --- 1. PyTorch, same step -------------------------------------------------------------------
if [ "${SKIP_TORCH:-0}" != 1 ]; then
  fl=$(echo $FIDELITIES | tr ' ' ',')
  for mode in "f32 --no-tf32" "tf32" "bf16 --precision bf16"; do
    set -- $mode
    tag=$1; shift
    say "torch $tag on $TORCH_DEVICE (cap ${TORCH_CAP_S}s)"
    smi_start
    # shellcheck disable=SC2086
    PYTHONUNBUFFERED=1 timeout -k 5 "$TORCH_CAP_S" "$PY" bench/gpu/torch_step.py --device "$TORCH_DEVICE" \
      --fidelity "$fl" --warmup 3 --steps 10 --time-cap-s 8 $TORCH_ARGS "$@" 2>>"$LOG" |
      sed "s/}\$/,\"mode\":\"$tag\"}/" >>"$RES"
    say "torch $tag: rc ${PIPESTATUS[0]}, nvidia-smi peak +$(smi_stop) MiB (whole process)"
  done
fi

# --- the burn binary -------------------------------------------------------------------------
BIN=""
if [ -x .gpu/gpu_step ]; then
  BIN=.gpu/gpu_step
elif [ -f .gpu/gpu_step.gz ]; then
  BIN="$OUT/gpu_step"
  gzip -dc .gpu/gpu_step.gz >"$BIN" && chmod +x "$BIN" || BIN=""
fi

if [ "${SKIP_BURN:-0}" != 1 ] && [ -z "$BIN" ]; then
  say "no .gpu/gpu_step(.gz): run bench/gpu/prepare.sh on the build machine and carry .gpu"
elif [ "${SKIP_BURN:-0}" != 1 ]; then
  # Vulkan loader and the GL dispatch libraries the NVIDIA ICD links against (the device image
  # has none of them); unpacked into / as the device notes prescribe, on a GPU machine only.
  if [ "$BURN_DEVICE" != cpu ]; then
    if command -v nvidia-smi >/dev/null && ls .gpu/debs/*.deb >/dev/null 2>&1; then
      for f in .gpu/debs/*.deb; do dpkg -x "$f" /; done
      ldconfig
      say "unpacked $(ls .gpu/debs/*.deb | wc -l) .deb(s): Vulkan loader and GL dispatch"
    elif ! ldconfig -p | grep -q 'libvulkan.so.1'; then
      say "WARNING: no libvulkan.so.1 and no .gpu/debs: burn will find no adapter"
    fi
    if [ -z "${VK_DRIVER_FILES:-}" ]; then
      for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
        /etc/vulkan/icd.d/nvidia_icd.json; do
        if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; break; fi
      done
      if [ -z "${VK_DRIVER_FILES:-}" ]; then
        icd=$(find /usr/local/nvidia /usr/share /etc -maxdepth 5 -name 'nvidia_icd*.json' 2>/dev/null | head -1)
        [ -n "$icd" ] && export VK_DRIVER_FILES="$icd"
      fi
    fi
    say "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
    # wgpu picks the high-power adapter; pin the discrete GPU so a CPU (llvmpipe) adapter never
    # sneaks in.
    export CUBECL_WGPU_DEFAULT_DEVICE=${CUBECL_WGPU_DEFAULT_DEVICE:-"DiscreteGpu(0)"}
  fi
  export CUBECL_AUTOTUNE_LEVEL="$AUTOTUNE"

  # --- 2. burn, all fidelities in one process --------------------------------------------------
  fl=$(echo $FIDELITIES | tr ' ' ',')
  # Time for the timed steps of each fidelity; the rest of the cap goes to compilation/warm-up.
  n=$(echo $FIDELITIES | wc -w)
  per=$(((BURN_CAP_S / 3) / n))
  [ "$per" -lt 5 ] && per=5
  say "burn $BURN_DEVICE fidelities $fl (cap ${BURN_CAP_S}s, autotune $AUTOTUNE)"
  smi_start
  # shellcheck disable=SC2086
  timeout -k 5 "$BURN_CAP_S" "$BIN" --device "$BURN_DEVICE" --fidelity "$fl" --warmup 2 --steps "$STEPS" \
    --time-cap-s "$per" $BURN_ARGS >"$OUT/burn.jsonl"
  rc=$?
  smi=$(smi_stop)
  sed "s/}\$/,\"smi_peak_mib_process\":$smi,\"autotune\":\"$AUTOTUNE\"}/" "$OUT/burn.jsonl" >>"$RES"
  for f in $FIDELITIES; do
    if ! grep -q "\"fidelity\":\"$f\"" "$OUT/burn.jsonl"; then
      echo "{\"impl\":\"burn\",\"fidelity\":\"$f\",\"error\":\"not reached: exit $rc (124 = past ${BURN_CAP_S}s)\"}" >>"$RES"
    fi
  done
  say "burn: rc $rc, $(grep -c step_s_median "$OUT/burn.jsonl") fidelities measured, nvidia-smi peak +${smi} MiB"

  # --- 3. bf16 on Vulkan must be refused ---------------------------------------------------------
  if [ "$BURN_DEVICE" != cpu ]; then
    say "burn $BURN_DEVICE bf16 (expected: refused)"
    # shellcheck disable=SC2086
    timeout -k 5 30 "$BIN" --device "$BURN_DEVICE" --precision bf16 --fidelity "${FIDELITIES%% *}" \
      --warmup 1 --steps 1 $BURN_ARGS >>"$RES" 2>>"$LOG"
    say "burn bf16: rc $?"
  fi
fi

# --- table -----------------------------------------------------------------------------------
"$PY" bench/gpu/summarize.py "$RES" | tee "$OUT/table.md"
say "done"
