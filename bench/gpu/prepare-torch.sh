#!/usr/bin/env bash
# Prepares what bench/gpu/check-torch.sh runs on the device machine: `lofi` and the `gpu_step`
# bench built with `--features tch` against libtorch 2.11.0 laid out from PyPI's wheels
# (scripts/libtorch.sh), stripped and xz-compressed into .gpu-torch/ (self-ignoring, never
# committed), with the minimal FFmpeg the demo needs there (bench/gpu/min-ffmpeg.sh, as
# prepare.sh does for the cubecl check). No cubecl and no Vulkan: the device machine's PyTorch
# supplies libtorch, cuDNN and the CUDA libraries at run time.
#
#   bench/gpu/prepare-torch.sh                      # the CUDA variant, release: for the device
#   VARIANT=cpu PROFILE=dev bench/gpu/prepare-torch.sh   # the CPU variant: the dry run here
#
# Knobs: VARIANT cuda|cpu (default cuda); PROFILE (default release); CARGO_TARGET_DIR (default
# target/tch-cuda for the CUDA variant, the workspace's target/ for the CPU one: changing
# LIBTORCH rebuilds everything downstream of torch-sys, so the two variants keep their own
# builds); SKIP_LIBS=1 skips the FFmpeg libraries (the demo then needs the machine's FFmpeg).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
VARIANT=${VARIANT:-cuda}
PROFILE=${PROFILE:-release}
LIBTORCH=$(scripts/libtorch.sh "$VARIANT" | tail -1)
export LIBTORCH
if [ "$VARIANT" = cuda ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/tch-cuda}
fi
mkdir -p .gpu-torch
echo '*' >.gpu-torch/.gitignore

echo "prepare-torch: building lofi and gpu_step ($PROFILE, --features tch, LIBTORCH=$LIBTORCH)" >&2
t0=$(date +%s)
cargo build --profile "$PROFILE" --locked -p lofi -p lofi-model --features lofi/tch,lofi-model/tch \
  --bin lofi --bench gpu_step --message-format=json-render-diagnostics >.gpu-torch/build.jsonl
echo "prepare-torch: build took $(($(date +%s) - t0)) s" >&2
exe() {
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == sys.argv[2] and m.get("executable"):
        print(m["executable"])' .gpu-torch/build.jsonl "$1" | tail -1
}
STEP=$(exe gpu_step)
LOFI=$(exe lofi)
rm -f .gpu-torch/build.jsonl
for f in "$STEP" "$LOFI"; do
  if [ -z "$f" ] || [ ! -x "$f" ]; then
    echo "prepare-torch: cargo did not report the gpu_step and lofi executables" >&2
    exit 1
  fi
done
for pair in "gpu_step:$STEP" "lofi:$LOFI"; do
  name=.gpu-torch/${pair%%:*}
  strip -o "$name.tmp" "${pair#*:}"
  xz -6 -T2 -c "$name.tmp" >"$name.xz.tmp"
  mv "$name.xz.tmp" "$name.xz"
  rm -f "$name.tmp"
  echo "prepare-torch: $name.xz $(du -h "$name.xz" | cut -f1)" >&2
done

if [ "${SKIP_LIBS:-0}" != 1 ]; then
  FFMPEG_PREFIX=${FFMPEG_PREFIX:-target/gpu-ffmpeg}
  bash bench/gpu/min-ffmpeg.sh "$FFMPEG_PREFIX"
  FFMPEG_PREFIX=$(cd "$FFMPEG_PREFIX" && pwd)
  rm -rf .gpu-torch/libs.tmp && mkdir -p .gpu-torch/libs.tmp
  # lofi's libraries beyond the C runtime and libtorch (which the device's PyTorch supplies).
  LD_LIBRARY_PATH="$FFMPEG_PREFIX/lib:$LIBTORCH/lib" ldd "$LOFI" | awk '/=> \// {print $3}' |
    grep -v -E '/(libc|libm|libgcc_s|ld-linux-x86-64|libpthread|libdl|librt|libstdc\+\+|libresolv)\.so' |
    grep -v -E '/(libtorch|libtorch_cpu|libtorch_cuda|libc10|libc10_cuda|libgomp|libcudart|libcupti)[.-]' |
    while read -r lib; do cp -L "$lib" .gpu-torch/libs.tmp/; done
  tar -cf - -C .gpu-torch/libs.tmp . | xz -9 -T2 >.gpu-torch/lofi-libs.tar.xz
  rm -rf .gpu-torch/libs.tmp
  echo "prepare-torch: .gpu-torch/lofi-libs.tar.xz $(du -h .gpu-torch/lofi-libs.tar.xz | cut -f1)" >&2
fi
echo "prepare-torch: .gpu-torch $(du -sh .gpu-torch | cut -f1) (the device tool carries 64 MiB per call)" >&2
echo "prepare-torch: device tool call: carry [\".gpu-torch\"], timeout_s 480, command: OUT=\$OUT bash bench/gpu/check-torch.sh" >&2
