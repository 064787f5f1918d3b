#!/usr/bin/env bash
# Device check (issues 6 and 13): burn on CUDA, burn on Vulkan and PyTorch on the same card, in
# one script under 8 minutes. One LoFi training step (TSM-R18 + G-TAD, 1 video, 1 frame per
# snippet: forward, G-TAD loss, backward, SGD) at full, S, T and ST fidelity, f32 and bf16 where
# the implementation computes in bf16; extraction throughput (the encoder's forward pass alone,
# frames/s at 100 x 224); the start-up of a first run (kernels compiled) against a second run
# that reads lofi's kernel cache; and the tiny `lofi demo` end to end on CUDA.
#
# Runs ON the device machine, from the repository root, with `.gpu/` (gpu_step and the Vulkan
# loader .debs) and/or `.gpu-demo/` (lofi and the shared libraries it needs there: a minimal
# FFmpeg of the version it was linked against, HDF5) carried, both made on a build machine by
# bench/gpu/prepare.sh (release, --features vulkan,cuda, xz-compressed). Needs no Rust and no
# network. Both fit one call's 64 MiB (prepare.sh prints the call, or two calls split by PARTS
# if they ever do not).
#
# Time: the whole script stops by BUDGET_S (default 470 s): every stage runs under
# `timeout min(its cap, time left)`, stages that would get under 10 s are skipped and marked so,
# and every number is written the moment it exists, so a slow stage costs only its own numbers.
# Order: PyTorch (cheap, always recorded), burn-cuda f32 (the open question), the demo on CUDA,
# burn-vulkan f32 (known to spend minutes compiling), then bf16 (every kernel compiled again), each
# burn backend cheapest fidelity first so kernels compiled for one fidelity serve the next.
#
# Output: the table on stdout and in $OUT/table.md, JSON lines in $OUT/results.jsonl, the log in
# $OUT/check.log, what each burn backend compiled and tuned in $OUT/kernels.md (cubecl's records,
# bench/gpu/kernel_records.py), and each burn backend's kernel cache, $OUT/kernels-DEVICE.tar.xz
# (KEEP_CACHE, SEED below). At most 8 files, as the device tool brings back.
#
# Knobs (environment):
#   PARTS         what to run, default "torch burn demo"; "probe" alone is a one-minute first look
#                 (card, CUDA libraries, one tiny burn-cuda step, `lofi --device cuda device`)
#   BUDGET_S      whole-script limit in seconds (default 470)
#   FIDELITIES    default "t st s full" (names or LxS); EXTRACT_FIDELITY default full (100x224)
#   BURN_DEVICES  default "cuda vulkan"; "cpu" runs the plumbing on a machine without a GPU
#   BURN_ARGS     extra gpu_step options (e.g. "--base-width 4 --tiny-head" for a dry run)
#   CUDA_COLD_CAP_S  cap of burn-cuda's first process (empty kernel cache; default 240: on the
#                 H200 on 2026-11-30 no first step ended within 140 s, all of it compilation)
#   COLD_CAP_S    the same for the other burn backends (default 150)
#   STEPS         timed steps per fidelity (default 10); WARMUP (default 2)
#   AUTOTUNE      cubecl autotune level (default minimal)
#   TORCH_DEVICE  default cuda; TORCH_ARGS extra torch_step.py options; SKIP_TORCH=1
#   DEMO_DEVICE   default cuda (cpu for a dry run); DEMO_CAP_S (default 150); SKIP_DEMO=1
#   SEED          folder of kernel caches from an earlier run (default .gpu-cache, carried when
#                 it exists): burn on DEVICE starts from SEED/kernels-DEVICE.tar.xz instead of an
#                 empty cache, its first process marked "seeded". The compilation a first run
#                 needs (minutes on the H200) then spreads over device sessions: each one adds
#                 what it compiled and tuned, and the next starts from there.
#   KEEP_CACHE    1 (the default where nvidia-smi finds a card): each burn backend's kernel cache
#                 comes back as $OUT/kernels-DEVICE.tar.xz (when under the device tool's 16 MiB
#                 per file), ready to be a later run's SEED; 0 keeps nothing
#   PYTHON        default python3
set -u
OUT=${OUT:-/tmp/lofi-gpu-check}
mkdir -p "$OUT"
LOG="$OUT/check.log"
RES="$OUT/results.jsonl"
: >"$RES"
exec > >(tee -a "$LOG") 2>&1
PARTS=" ${PARTS:-torch burn demo} "
BUDGET_S=${BUDGET_S:-470}
FIDELITIES=${FIDELITIES:-"t st s full"}
EXTRACT_FIDELITY=${EXTRACT_FIDELITY:-full}
BURN_DEVICES=${BURN_DEVICES:-"cuda vulkan"}
BURN_ARGS=${BURN_ARGS:-}
CUDA_COLD_CAP_S=${CUDA_COLD_CAP_S:-240}
COLD_CAP_S=${COLD_CAP_S:-150}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-2}
AUTOTUNE=${AUTOTUNE:-minimal}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
TORCH_ARGS=${TORCH_ARGS:-}
DEMO_DEVICE=${DEMO_DEVICE:-cuda}
DEMO_CAP_S=${DEMO_CAP_S:-150}
PY=${PYTHON:-python3}
WORK=${WORK:-/tmp/lofi-gpu-work}
SEED=${SEED:-.gpu-cache}
if [ -z "${KEEP_CACHE:-}" ]; then
  if nvidia-smi -L >/dev/null 2>&1; then KEEP_CACHE=1; else KEEP_CACHE=0; fi
fi
T0=$(date +%s)
say() { echo "[check +$(($(date +%s) - T0))s] $*"; }
FL=$(echo $FIDELITIES | tr ' ' ',')
# Seconds kept back at the end: the table (8 s) and packing the kernel caches (30 s).
RESERVE_S=8
[ "$KEEP_CACHE" = 1 ] && RESERVE_S=38

# The cap for a stage: its own, or what is left of the budget (minus the reserve for the table
# and the caches), or 0 when under 10 s would be left.
cap() {
  local left=$((BUDGET_S - ($(date +%s) - T0) - RESERVE_S))
  local c=$1
  [ "$left" -lt "$c" ] && c=$left
  [ "$c" -lt 10 ] && c=0
  echo "$c"
}
skipped() { # impl kind device precision note
  echo "{\"impl\":\"$1\",\"kind\":\"$2\",\"device\":\"$3\",\"precision\":\"$4\",\"fidelity\":\"*\",\"error\":\"$5\"}" >>"$RES"
  say "skipped: $1 $2 $3 $4: $5"
}

say "host $(uname -m), $(nproc) cores, budget ${BUDGET_S}s"
CARD=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
say "card: ${CARD:-none found by nvidia-smi}"
echo "{\"impl\":\"card\",\"card\":\"${CARD}\"}" >>"$RES"

# While a command runs, nvidia-smi samples the card every 100 ms: smi_stop sets SMI_PEAK (highest
# memory.used in MiB minus the value before it) and SMI_UTIL (mean GPU utilisation in %), both
# null without nvidia-smi. (Called directly, not in $(...), so that it can wait for the sampler.)
SMI_PID=""
smi_start() {
  SMI_BASE=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
  SMI_FILE=$(mktemp)
  if [ -n "$SMI_BASE" ]; then
    nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits -lms 100 \
      >"$SMI_FILE" 2>/dev/null &
    SMI_PID=$!
  fi
}
smi_stop() {
  if [ -n "$SMI_PID" ]; then kill "$SMI_PID" 2>/dev/null; wait "$SMI_PID" 2>/dev/null; fi
  SMI_PID=""
  SMI_PEAK=null; SMI_UTIL=null
  if [ -n "${SMI_BASE:-}" ] && [ -s "$SMI_FILE" ]; then
    SMI_PEAK=$(awk -F', *' -v b="$SMI_BASE" '$1+0 > m {m = $1+0} END {print m - b}' "$SMI_FILE")
    SMI_UTIL=$(awk -F', *' '{s += $2; n++} END {if (n) printf "%.0f", s / n; else print "null"}' "$SMI_FILE")
  fi
  rm -f "$SMI_FILE"
}

# --- 0. unpack what prepare.sh made ----------------------------------------------------------
mkdir -p "$WORK/bin"
unxz_to() { # FILE.xz DEST; python's lzma when xz is missing
  if command -v xz >/dev/null; then
    xz -dc "$1" >"$2"
  else
    "$PY" -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"
  fi
}
STEP_BIN=""; LOFI_BIN=""; LOFI_LIBS=""
# An uncompressed executable (a dry run's own build) is used as it is.
if [[ $PARTS == *" burn "* ]]; then
  if [ -x .gpu/gpu_step ]; then
    STEP_BIN=.gpu/gpu_step
  elif [ -f .gpu/gpu_step.xz ] && unxz_to .gpu/gpu_step.xz "$WORK/bin/gpu_step"; then
    chmod +x "$WORK/bin/gpu_step" && STEP_BIN="$WORK/bin/gpu_step"
  fi
fi
if [[ $PARTS == *" demo "* ]]; then
  if [ -x .gpu-demo/lofi ]; then
    LOFI_BIN=.gpu-demo/lofi
  elif [ -f .gpu-demo/lofi.xz ] && unxz_to .gpu-demo/lofi.xz "$WORK/bin/lofi"; then
    chmod +x "$WORK/bin/lofi" && LOFI_BIN="$WORK/bin/lofi"
  fi
fi
# The shared libraries `lofi` needs (the device image has no FFmpeg), for lofi only.
if [[ $PARTS == *" demo "* ]] && [ -f .gpu-demo/lofi-libs.tar.xz ]; then
  rm -rf "${WORK:?}/lib" && mkdir -p "$WORK/lib" && unxz_to .gpu-demo/lofi-libs.tar.xz "$WORK/lofi-libs.tar" &&
    tar -xf "$WORK/lofi-libs.tar" -C "$WORK/lib" && rm -f "$WORK/lofi-libs.tar"
fi
[ -n "$(ls "$WORK/lib" 2>/dev/null)" ] && LOFI_LIBS="$WORK/lib"
say "parts:$PARTS; gpu_step ${STEP_BIN:-not here}, lofi ${LOFI_BIN:-not here}${LOFI_LIBS:+ with its libraries} (bench/gpu/prepare.sh makes .gpu and .gpu-demo)"

case " $BURN_DEVICES$PARTS" in *" vulkan "*" burn "*)
  # Vulkan loader and the GL dispatch libraries the NVIDIA ICD links against (the device image
  # has none of them); unpacked into / as the device notes prescribe, on a GPU machine only.
  if command -v nvidia-smi >/dev/null && ls .gpu/debs/*.deb >/dev/null 2>&1; then
    for f in .gpu/debs/*.deb; do dpkg -x "$f" /; done
    ldconfig
    say "unpacked $(ls .gpu/debs/*.deb | wc -l) .deb(s): Vulkan loader and GL dispatch"
  fi
  if [ -z "${VK_DRIVER_FILES:-}" ]; then
    for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
      /etc/vulkan/icd.d/nvidia_icd.json; do
      if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; break; fi
    done
  fi
  say "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
  # Pin the discrete GPU so a CPU (llvmpipe) adapter never sneaks in.
  export CUBECL_WGPU_DEFAULT_DEVICE=${CUBECL_WGPU_DEFAULT_DEVICE:-"DiscreteGpu(0)"}
  ;;
esac

case " $BURN_DEVICES $DEMO_DEVICE " in *" cuda "*)
  # NVRTC compiles burn's CUDA kernels at run time and reads the CUDA headers: the toolkit's
  # (/usr/local/cuda, which cubecl finds by itself) or else PyTorch's nvidia wheels.
  if ! ldconfig -p | grep -q 'libnvrtc.so'; then
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
      $("$PY" -c 'import nvidia,os;[print(os.path.join(p,s,"lib")) for p in nvidia.__path__ for s in ("cu13","cuda_nvrtc")]' 2>/dev/null); do
      if ls "$d"/libnvrtc.so* >/dev/null 2>&1; then export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; break; fi
    done
  fi
  if [ -z "${CUDA_PATH:-}" ] && [ ! -f /usr/local/cuda/include/cuda_runtime.h ]; then
    d=$("$PY" -c 'import nvidia,os;[print(os.path.join(p,"cu13")) for p in nvidia.__path__]' 2>/dev/null | head -1)
    [ -n "$d" ] && [ -d "$d/include" ] && export CUDA_PATH="$d"
  fi
  say "CUDA: nvcc $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo none), CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}, nvrtc: $( (ldconfig -p; ls ${LD_LIBRARY_PATH:+${LD_LIBRARY_PATH//:/ }} 2>/dev/null) | grep -o 'libnvrtc.so[.0-9]*' | sort -u | tr '\n' ' ')"
  ;;
esac
export CUBECL_AUTOTUNE_LEVEL="$AUTOTUNE"

# --- probe: does burn-cuda run at all? (seconds, before a full check on the same machine) -----
if [[ $PARTS == *" probe "* ]]; then
  export LOFI_KERNEL_CACHE=off
  if [ -n "$STEP_BIN" ]; then
    say "probe: tiny burn-cuda step (TSM-R18 width 4, tiny head, 4 snippets of 32 px)"
    timeout -k 5 90 "$STEP_BIN" --device cuda --fidelity 4x32 --depth 18 --base-width 4 --tiny-head \
      --warmup 1 --steps 2 2>&1 | tail -15
    say "probe: gpu_step rc ${PIPESTATUS[0]}"
  fi
  if [ -n "$LOFI_BIN" ]; then
    ( [ -n "$LOFI_LIBS" ] && export LD_LIBRARY_PATH="$LOFI_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      timeout -k 5 60 "$LOFI_BIN" --device cuda device 2>&1 | tail -15
      exit "${PIPESTATUS[0]}" )
    say "probe: lofi device rc $?"
  fi
  exit 0
fi

# --- 1. PyTorch: f32 (no TF32) and bf16 autocast steps, then extraction ------------------------
if [ "${SKIP_TORCH:-0}" != 1 ] && [[ $PARTS == *" torch "* ]]; then
  for mode in "f32 --no-tf32" "bf16 --precision bf16"; do
    set -- $mode
    tag=$1; shift
    c=$(cap 50)
    if [ "$c" = 0 ]; then skipped torch step "$TORCH_DEVICE" "$tag" "out of time"; continue; fi
    say "torch $tag steps on $TORCH_DEVICE (cap ${c}s)"
    smi_start
    # shellcheck disable=SC2086
    PYTHONUNBUFFERED=1 timeout -k 5 "$c" "$PY" bench/gpu/torch_step.py --device "$TORCH_DEVICE" \
      --fidelity "$FL" --warmup 3 --steps "$STEPS" --time-cap-s 8 $TORCH_ARGS "$@" 2>>"$LOG" >>"$RES"
    rc=$?
    smi_stop
    say "torch $tag: rc $rc, nvidia-smi peak +$SMI_PEAK MiB (whole process), GPU busy $SMI_UTIL %"
  done
  c=$(cap 30)
  if [ "$c" != 0 ]; then
    say "torch extraction on $TORCH_DEVICE at $EXTRACT_FIDELITY (cap ${c}s)"
    # shellcheck disable=SC2086
    PYTHONUNBUFFERED=1 timeout -k 5 "$c" "$PY" bench/gpu/torch_step.py --device "$TORCH_DEVICE" --mode extract \
      --fidelity "$EXTRACT_FIDELITY" --warmup 3 --steps "$STEPS" --time-cap-s 8 --no-tf32 $TORCH_ARGS 2>>"$LOG" >>"$RES"
    say "torch extraction: rc $?"
  else
    skipped torch extract "$TORCH_DEVICE" f32 "out of time"
  fi
fi

# --- burn: one backend ------------------------------------------------------------------------
# burn_run DEVICE PRECISION MODE FIDELITIES CAP WARMUP STEPS TAG: one gpu_step process; its JSON
# lines go to results.jsonl with the tag ("cold"/"warm" start), the nvidia-smi peak, the GPU's mean
# utilisation and the process's wall and CPU seconds (a first run on the GPU is kernel
# compilation on the CPU: CPU seconds close to wall seconds and the GPU idle say so).
burn_run() {
  local dev=$1 prec=$2 mode=$3 fl=$4 want=$5 wu=$6 st=$7 tag=$8
  local c
  c=$(cap "$want")
  if [ "$c" = 0 ]; then skipped burn "$mode" "$dev" "$prec" "out of time ($tag)"; return; fi
  local n per part="$WORK/burn.part"
  n=$(echo "$fl" | tr ',' ' ' | wc -w)
  per=$(((c / 3) / n)); [ "$per" -lt 3 ] && per=3
  say "burn $dev $prec $mode $fl ($tag start, cap ${c}s)"
  smi_start
  local TIMEFORMAT='%R %U %S'
  # shellcheck disable=SC2086
  { time timeout -k 5 "$c" "$STEP_BIN" --device "$dev" --precision "$prec" --mode "$mode" --fidelity "$fl" \
    --warmup "$wu" --steps "$st" --time-cap-s "$per" $BURN_ARGS >"$part" 2>>"$LOG"; } 2>"$WORK/time.part"
  local rc=$?
  smi_stop
  # bash's `time` line is the last one; anything before it (a crash report) belongs in the log.
  local wall user sys
  head -n -1 "$WORK/time.part" >>"$LOG"
  read -r wall user sys < <(tail -n 1 "$WORK/time.part")
  local cpu extra
  cpu=$(awk -v u="${user:-0}" -v s="${sys:-0}" 'BEGIN {print u + s}')
  extra="\"smi_peak_mib_process\":$SMI_PEAK,\"gpu_busy_pct\":$SMI_UTIL,\"wall_s\":${wall:-null},\"cpu_s\":$cpu,\"start\":\"$tag\",\"autotune\":\"$AUTOTUNE\""
  sed "s|}\$|,$extra}|" "$part" >>"$RES"
  for f in $(echo "$fl" | tr ',' ' '); do
    if ! grep -q "\"fidelity\":\"$f\"" "$part"; then
      echo "{\"impl\":\"burn\",\"kind\":\"$mode\",\"device\":\"$dev\",\"precision\":\"$prec\",\"fidelity\":\"$f\",$extra,\"error\":\"not reached: exit $rc (124 = past ${c}s)\"}" >>"$RES"
    fi
  done
  say "burn $dev $prec $mode: rc $rc, $(grep -c step_s_median "$part") measured, ${wall}s wall, ${cpu}s CPU, GPU busy ${SMI_UTIL}%, nvidia-smi peak +${SMI_PEAK} MiB"
}

# What the processes of one kernel cache compiled, loaded and tuned (bench/gpu/kernel_records.py
# reads cubecl's records in the cache's database): appended to kernels.md, and one JSON line.
kernel_records() { # DEVICE
  local db="$LOFI_KERNEL_CACHE/default.db"
  [ -f "$db" ] || return 0
  "$PY" bench/gpu/kernel_records.py "$db" --json --top 12 --markdown-to "$OUT/kernels.md" \
    --heading "### $1 ($(date -u +%H:%M:%S))" 2>>"$LOG" |
    sed "s/^{/{\"impl\":\"kernels\",\"device\":\"$1\",/" >>"$RES"
}

# Each backend's first process: "cold" (empty kernel cache) or "seeded"; bf16 reports the same.
declare -A FIRST_START
burn_backend() { # DEVICE COLD_CAP: f32 steps cold and warm, extraction, the kernel records
  local dev=$1 cold_cap=$2 start=cold
  # A fresh kernel cache, so the first process shows a first run's compilation and the second
  # one (same cache) the start-up of every later run; or an earlier run's cache (SEED), so this
  # run goes on from where that one stopped.
  export LOFI_KERNEL_CACHE="$WORK/kernels-$dev"
  rm -rf "$LOFI_KERNEL_CACHE"
  if [ -f "$SEED/kernels-$dev.tar.xz" ]; then
    mkdir -p "$LOFI_KERNEL_CACHE"
    if unxz_to "$SEED/kernels-$dev.tar.xz" "$WORK/seed.tar" && tar -xf "$WORK/seed.tar" -C "$LOFI_KERNEL_CACHE"; then
      start=seeded
      say "burn $dev: kernel cache seeded from $SEED/kernels-$dev.tar.xz ($(du -sm "$LOFI_KERNEL_CACHE" | cut -f1) MiB)"
    else
      say "burn $dev: $SEED/kernels-$dev.tar.xz does not unpack; starting from an empty cache"
      rm -rf "$LOFI_KERNEL_CACHE"
    fi
    rm -f "$WORK/seed.tar"
  fi
  FIRST_START[$dev]=$start
  local first=${FIDELITIES%% *}
  burn_run "$dev" f32 step "$FL" "$cold_cap" "$WARMUP" "$STEPS" "$start"
  burn_run "$dev" f32 step "$first" 45 1 3 warm
  if [ "$dev" != cuda ] && [ "$dev" != cpu ]; then
    # wgpu/Vulkan has no bf16 arithmetic: lofi must refuse it with a message.
    c=$(cap 30)
    if [ "$c" != 0 ]; then
      say "burn $dev bf16 (expected: refused)"
      # shellcheck disable=SC2086
      timeout -k 5 "$c" "$STEP_BIN" --device "$dev" --precision bf16 --fidelity "$first" \
        --warmup 1 --steps 1 $BURN_ARGS 2>>"$LOG" | sed "s/}\$/,\"start\":\"cold\"}/" >>"$RES"
    fi
  fi
  burn_run "$dev" f32 extract "$EXTRACT_FIDELITY" 60 "$WARMUP" "$STEPS" cold
  kernel_records "$dev f32"
}

burn_bf16() { # DEVICE: bf16 steps (CUDA and the CPU compute in bf16), in the same kernel cache
  export LOFI_KERNEL_CACHE="$WORK/kernels-$1"
  burn_run "$1" bf16 step "$FL" 100 "$WARMUP" "$STEPS" "${FIRST_START[$1]:-cold}"
  kernel_records "$1 f32 then bf16"
}

# --- 3. the tiny demo, end to end on the GPU -----------------------------------------------------
run_demo() {
  local c
  c=$(cap "$DEMO_CAP_S")
  if [ -z "$LOFI_BIN" ]; then skipped lofi demo "$DEMO_DEVICE" f32 "no lofi binary"; return; fi
  if [ "$c" = 0 ]; then skipped lofi demo "$DEMO_DEVICE" f32 "out of time"; return; fi
  export LOFI_KERNEL_CACHE="$WORK/kernels-demo"
  rm -rf "$WORK/demo" "$LOFI_KERNEL_CACHE"
  say "lofi --device $DEMO_DEVICE device, then demo --size tiny --seeds 1 (cap ${c}s)"
  local t1 t2 rc
  t1=$(date +%s%N)
  (
    [ -n "$LOFI_LIBS" ] && export LD_LIBRARY_PATH="$LOFI_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    "$LOFI_BIN" --device "$DEMO_DEVICE" device &&
      timeout -k 5 "$c" "$LOFI_BIN" --device "$DEMO_DEVICE" demo --size tiny --seeds 1 --out "$WORK/demo" \
        --json "$OUT/demo.json" --fresh
  ) >"$OUT/demo.log" 2>&1
  rc=$?
  t2=$(date +%s%N)
  tail -12 "$OUT/demo.log"
  local secs=$(((t2 - t1) / 1000000))
  echo "{\"impl\":\"lofi\",\"kind\":\"demo\",\"device\":\"$DEMO_DEVICE\",\"rc\":$rc,\"seconds\":$((secs / 1000)).$(printf %03d $((secs % 1000)))}" >>"$RES"
  say "demo: rc $rc (table in $OUT/demo.json, log in $OUT/demo.log)"
  kernel_records "lofi demo on $DEMO_DEVICE"
}

# --- 2. burn, one backend after the other (f32); the demo right after CUDA; bf16 last ----------
DEMO_DONE=0
[[ $PARTS == *" demo "* ]] || SKIP_DEMO=1
[[ $PARTS == *" burn "* ]] || BURN_DEVICES=""
for dev in $BURN_DEVICES; do
  if [ -z "$STEP_BIN" ]; then skipped burn step "$dev" f32 "no gpu_step binary"; continue; fi
  case $dev in
    cuda) burn_backend cuda "$CUDA_COLD_CAP_S" ;;
    *) burn_backend "$dev" "$COLD_CAP_S" ;;
  esac
  if [ "$dev" = "$DEMO_DEVICE" ] && [ "${SKIP_DEMO:-0}" != 1 ]; then
    run_demo
    DEMO_DONE=1
  fi
done
if [ "$DEMO_DONE" = 0 ] && [ "${SKIP_DEMO:-0}" != 1 ]; then run_demo; fi
# bf16 compiles every kernel again (other element types): after everything else.
for dev in $BURN_DEVICES; do
  if [ -n "$STEP_BIN" ] && { [ "$dev" = cuda ] || [ "$dev" = cpu ]; }; then burn_bf16 "$dev"; fi
done

# --- the kernel caches, for the next run's SEED ---------------------------------------------------
# Compressed with xz where the image has it (all cores), else Python's lzma; a cache over the
# device tool's 16 MiB per file stays behind (said in the log).
if [ "$KEEP_CACHE" = 1 ]; then
  for dev in $BURN_DEVICES; do
    dir="$WORK/kernels-$dev"
    [ -n "$(ls -A "$dir" 2>/dev/null)" ] || continue
    out="$OUT/kernels-$dev.tar.xz"
    if command -v xz >/dev/null; then
      tar -cf - -C "$dir" . | xz -T0 -6 >"$out"
    else
      "$PY" -c 'import sys, tarfile
with tarfile.open(sys.argv[1], "w:xz", preset=3) as t:
    t.add(sys.argv[2], arcname=".")' "$out" "$dir"
    fi
    size=$(stat -c %s "$out")
    mb=$(awk -v b="$size" 'BEGIN {printf "%.1f", b / 1048576}')
    if [ "$size" -gt 16777216 ]; then
      say "kernel cache of $dev: $mb MiB compressed, over the 16 MiB a file may come back with; not kept"
      rm -f "$out"
    else
      say "kernel cache of $dev: $out ($mb MiB; $(du -sm "$dir" | cut -f1) MiB unpacked): copy it into .gpu-cache/ to seed the next run"
    fi
  done
fi

# --- table -----------------------------------------------------------------------------------
"$PY" bench/gpu/summarize.py "$RES" | tee "$OUT/table.md"
say "done"
