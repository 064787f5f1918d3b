#!/usr/bin/env bash
# Device check for issue 6: one LoFi training step (TSM-R18 + G-TAD, 1 video, 1 frame per
# snippet) at full, S, T and ST fidelity on the GPU through burn's wgpu/Vulkan backend, then the
# same step in the machine's PyTorch, printed as one table with ratios.
#
# Runs ON the device machine, from the repository root, with `.gpu/` carried (made here by
# bench/gpu/prepare.sh: the release bench binary and the Vulkan loader .debs). Needs no Rust and
# no network. Every part has a hard time cap; the whole script stays under ~7 minutes.
# Output: the table on stdout and in $OUT/table.md, raw JSON lines in $OUT/results.jsonl, the full
# log in $OUT/check.log.
#
# Knobs (environment): FIDELITIES (default "full s t st"), BURN_CAP_S (per fidelity, default 70),
# TORCH_CAP_S (per PyTorch run, default 60), TOTAL_CAP_S (no part starts after it, default 400),
# STEPS (timed steps, default 5), SKIP_TORCH=1,
# SKIP_BURN=1.
set -u
OUT=${OUT:-/tmp/lofi-gpu-check}
mkdir -p "$OUT"
LOG="$OUT/check.log"
RES="$OUT/results.jsonl"
: >"$RES"
exec > >(tee -a "$LOG") 2>&1
FIDELITIES=${FIDELITIES:-"full s t st"}
BURN_CAP_S=${BURN_CAP_S:-70}
TORCH_CAP_S=${TORCH_CAP_S:-60}
TOTAL_CAP_S=${TOTAL_CAP_S:-400}   # a part that would start after this many seconds is skipped
STEPS=${STEPS:-5}
PY=${PYTHON:-python3}
BIN=.gpu/gpu_step
T0=$(date +%s)
say() { echo "[check +$(($(date +%s) - T0))s] $*"; }
late() { [ $(($(date +%s) - T0)) -ge "$TOTAL_CAP_S" ] && say "skipping $1: past ${TOTAL_CAP_S}s" && return 0; return 1; }

say "host $(uname -m), $(nproc) cores"
CARD=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
say "card: ${CARD:-none found by nvidia-smi}"
echo "{\"impl\":\"card\",\"card\":\"${CARD}\"}" >>"$RES"

# --- Vulkan loader and NVIDIA ICD ------------------------------------------------------------
# The loader and the GL dispatch libraries the NVIDIA ICD links against (the device image has
# none of them); unpacked into / as the device notes prescribe, on a GPU machine only.
if command -v nvidia-smi >/dev/null && ls .gpu/debs/*.deb >/dev/null 2>&1; then
  for f in .gpu/debs/*.deb; do dpkg -x "$f" /; done
  ldconfig
  say "unpacked $(ls .gpu/debs/*.deb | wc -l) .deb(s): Vulkan loader and GL dispatch"
elif ! ldconfig -p | grep -q 'libvulkan.so.1'; then
  say "WARNING: no libvulkan.so.1 and no .gpu/debs: the burn part will find no adapter"
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
# wgpu picks the high-power adapter; pin it to the discrete GPU so a CPU (llvmpipe) adapter never
# sneaks in.
export CUBECL_WGPU_DEFAULT_DEVICE=${CUBECL_WGPU_DEFAULT_DEVICE:-"DiscreteGpu(0)"}

# Highest memory.used (MiB) seen while a command runs, minus the value before it.
SMI_PID=""
smi_start() {
  SMI_BASE=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
  SMI_FILE=$(mktemp)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$SMI_FILE" 2>/dev/null &
  SMI_PID=$!
}
smi_stop() {
  [ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null && wait "$SMI_PID" 2>/dev/null
  SMI_PID=""
  local peak
  peak=$(sort -n "$SMI_FILE" | tail -1)
  rm -f "$SMI_FILE"
  if [ -n "$peak" ] && [ -n "${SMI_BASE:-}" ]; then echo $((peak - SMI_BASE)); else echo null; fi
}

# --- burn (wgpu / Vulkan) --------------------------------------------------------------------
if [ "${SKIP_BURN:-0}" != 1 ]; then
  if [ -x "$BIN" ]; then
    for f in $FIDELITIES; do
      late "burn $f" && continue
      say "burn vulkan fidelity $f (cap ${BURN_CAP_S}s)"
      smi_start
      line=$(timeout -k 5 "$BURN_CAP_S" "$BIN" --device vulkan --fidelity "$f" --warmup 2 --steps "$STEPS" \
        --time-cap-s $((BURN_CAP_S / 2)))
      rc=$?
      smi=$(smi_stop)
      if [ -n "$line" ]; then
        echo "$line" | sed "s/}\$/,\"smi_peak_mib\":$smi,\"rc\":$rc}/" >>"$RES"
      else
        echo "{\"impl\":\"burn\",\"fidelity\":\"$f\",\"error\":\"exit $rc (124 = over ${BURN_CAP_S}s), no result\",\"smi_peak_mib\":$smi}" >>"$RES"
      fi
      say "burn $f: rc $rc, smi peak +${smi} MiB"
    done
    # bf16 on Vulkan: expected to be refused (no bf16 arithmetic in burn's wgpu backend).
    say "burn vulkan bf16 (expected: refused)"
    timeout -k 5 30 "$BIN" --device vulkan --precision bf16 --fidelity t --warmup 1 --steps 1 >>"$RES" 2>>"$LOG"
    say "burn vulkan bf16: rc $?"
  else
    say "no $BIN: run bench/gpu/prepare.sh on the build machine and carry .gpu"
  fi
fi

# --- PyTorch, same step ----------------------------------------------------------------------
if [ "${SKIP_TORCH:-0}" != 1 ]; then
  fl=$(echo $FIDELITIES | tr ' ' ',')
  for mode in "f32 --no-tf32" "tf32" "bf16 --precision bf16"; do
    set -- $mode
    tag=$1; shift
    late "torch $tag" && continue
    say "torch $tag (cap ${TORCH_CAP_S}s)"
    smi_start
    PYTHONUNBUFFERED=1 timeout -k 5 "$TORCH_CAP_S" "$PY" bench/gpu/torch_step.py --device cuda --fidelity "$fl" \
      --warmup 3 --steps 10 --time-cap-s 10 "$@" 2>>"$LOG" | sed "s/}\$/,\"mode\":\"$tag\"}/" >>"$RES"
    say "torch $tag: rc ${PIPESTATUS[0]}, smi peak +$(smi_stop) MiB (whole process)"
  done
fi

# --- table -----------------------------------------------------------------------------------
"$PY" bench/gpu/summarize.py "$RES" | tee "$OUT/table.md"
say "done"
