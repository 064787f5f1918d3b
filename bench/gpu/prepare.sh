#!/usr/bin/env bash
# Prepares what bench/gpu/check.sh runs, on a build machine with Rust and package-registry access
# (the device machine has neither): builds the training-step bench `gpu_step` and the `lofi`
# binary in release with both GPU backends (--features vulkan,cuda: CUDA kernels through NVRTC,
# which builds offline), strips and xz-compresses them, and fetches what the device image lacks.
# Two folders, both carried by one device tool call (64 MiB in all, the working tree included):
#   .gpu/       gpu_step.xz and the Vulkan loader .debs: the benchmarks (PyTorch, burn-cuda,
#               burn-vulkan);
#   .gpu-demo/  lofi.xz and lofi-libs.tar.xz, the shared libraries lofi needs there (the device
#               image has no FFmpeg): the tiny demo end to end on the GPU. lofi is linked against
#               Debian's FFmpeg; the libraries carried are a minimal build of the same FFmpeg
#               version (bench/gpu/min-ffmpeg.sh: same sonames and ABI, only the codecs and
#               containers lofi uses), because Debian's own closure (about 130 libraries, 47 MiB
#               compressed) does not fit beside the binaries.
# Both ignore themselves (`.gitignore` = `*`), so they are never committed; name them in the
# device tool's `carry`. The script prints their sizes and the call that carries them.
# A third, .gpu-cache/, holds the kernel caches an earlier check brought back
# ($OUT/kernels-DEVICE.tar.xz; SEED_FROM=DIR copies them from the folder the device tool put them
# in): check.sh then starts burn from them, so the minutes of kernel compilation of a first run
# are paid once over several device sessions. Compiled kernels are keyed by the executable's build,
# autotune results by the GPU and cubecl's version: keep the same gpu_step.xz (this script reuses
# it while it is newer than the build) to reuse both.
#
# Knobs: CARGO_TARGET_DIR reuses a build; CUDARC_CUDA_VERSION is the CUDA version the driver
# bindings are built for when no CUDA toolkit (nvcc) is installed here (default 13000, the H200
# machine's driver 580); PROFILE (default release; dev for a quick check of this script);
# SKIP_DEBS=1 skips apt; SKIP_LIBS=1 skips the libraries (then the demo cannot run on the device
# machine); FFMPEG_PREFIX (default <target>/gpu-ffmpeg) is where the minimal FFmpeg is built.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
mkdir -p .gpu/debs .gpu-demo
# Self-ignoring folders: git never lists them, and the device tool carries them only when named.
for d in .gpu .gpu-demo; do echo '*' >"$d/.gitignore"; done
rm -rf .gpu-libs # an older layout's third folder
if [ -n "${SEED_FROM:-}" ]; then
  mkdir -p .gpu-cache && echo '*' >.gpu-cache/.gitignore
  n=0
  for f in "$SEED_FROM"/kernels-*.tar.xz; do
    [ -f "$f" ] || continue
    xz -t "$f" || { echo "prepare.sh: $f is not a whole xz file" >&2; exit 1; }
    cp "$f" .gpu-cache/ && n=$((n + 1))
  done
  echo "prepare.sh: $n kernel cache(s) from $SEED_FROM in .gpu-cache/" >&2
fi

if [ "$(uname -m)" != x86_64 ]; then
  echo "prepare.sh: this machine is $(uname -m); the device machine is x86_64" >&2
  exit 1
fi
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
PROFILE=${PROFILE:-release}

echo "prepare.sh: building gpu_step and lofi ($PROFILE, --features vulkan,cuda, CUDA $CUDARC_CUDA_VERSION)" >&2
t0=$(date +%s)
cargo build --profile "$PROFILE" --locked -p lofi -p lofi-model \
  --features lofi/vulkan,lofi/cuda,lofi-model/vulkan,lofi-model/cuda --bin lofi --bench gpu_step \
  --message-format=json-render-diagnostics >.gpu/build.jsonl
echo "prepare.sh: build took $(($(date +%s) - t0)) s" >&2
exe() {
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == sys.argv[2] and m.get("executable"):
        print(m["executable"])' .gpu/build.jsonl "$1" | tail -1
}
STEP=$(exe gpu_step)
LOFI=$(exe lofi)
rm -f .gpu/build.jsonl
for f in "$STEP" "$LOFI"; do
  if [ -z "$f" ] || [ ! -x "$f" ]; then
    echo "prepare.sh: cargo did not report the gpu_step and lofi executables" >&2
    exit 1
  fi
done

# Stripped binaries are about 100 MB each and the device tool carries 64 MiB in all: xz them.
rm -f .gpu/gpu_step.gz .gpu/lofi.xz
# A compressed binary newer than its build is reused (xz -9 takes minutes).
for pair in ".gpu/gpu_step:$STEP" ".gpu-demo/lofi:$LOFI"; do
  name=${pair%%:*}
  strip -o "$name.tmp" "${pair#*:}" 2>/dev/null || cp "${pair#*:}" "$name.tmp"
  if [ "$name.xz" -nt "${pair#*:}" ]; then
    echo "prepare.sh: $name.xz is newer than the build: kept" >&2
    continue
  fi
  xz -9 -T2 -c "$name.tmp" >"$name.xz.tmp"
  mv "$name.xz.tmp" "$name.xz"
  echo "prepare.sh: $name.xz $(du -h "$name.xz" | cut -f1) ($(du -h "$name.tmp" | cut -f1) stripped)" >&2
done

# The shared libraries lofi needs beyond the C runtime, for the demo: the minimal FFmpeg in
# place of Debian's (found first through LD_LIBRARY_PATH, as on the device) and what else lofi
# links (HDF5 and its own closure, libx264).
if [ "${SKIP_LIBS:-0}" != 1 ]; then
  FFMPEG_PREFIX=${FFMPEG_PREFIX:-${CARGO_TARGET_DIR:-target}/gpu-ffmpeg}
  bash bench/gpu/min-ffmpeg.sh "$FFMPEG_PREFIX"
  FFMPEG_PREFIX=$(cd "$FFMPEG_PREFIX" && pwd) # ldd prints paths as LD_LIBRARY_PATH gives them
  rm -rf .gpu-demo/libs.tmp && mkdir -p .gpu-demo/libs.tmp
  LD_LIBRARY_PATH="$FFMPEG_PREFIX/lib" ldd .gpu-demo/lofi.tmp | awk '/=> \// {print $3}' |
    grep -v -E '/(libc|libm|libgcc_s|ld-linux-x86-64|libpthread|libdl|librt|libstdc\+\+|libresolv)\.so' |
    while read -r lib; do cp -L "$lib" .gpu-demo/libs.tmp/; done
  if ! compgen -G ".gpu-demo/libs.tmp/libavcodec.so.*" >/dev/null; then
    echo "prepare.sh: ldd did not list FFmpeg's libraries for lofi" >&2
    exit 1
  fi
  tar -cf - -C .gpu-demo/libs.tmp . | xz -9 -T2 >.gpu-demo/lofi-libs.tar.xz
  echo "prepare.sh: .gpu-demo/lofi-libs.tar.xz $(du -h .gpu-demo/lofi-libs.tar.xz | cut -f1) ($(ls .gpu-demo/libs.tmp | wc -l) libraries)" >&2
  rm -rf .gpu-demo/libs.tmp
fi

if [ "${SKIP_DEBS:-0}" != 1 ]; then
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  mkdir -p /tmp/amd64/partial
  # shellcheck disable=SC2086
  apt-get $o update >/dev/null
  rm -f .gpu/debs/*.deb
  # The loader, plus the GL dispatch libraries the NVIDIA ICD (libGLX_nvidia) links against; the
  # device notes list exactly these as what made Vulkan run there.
  # shellcheck disable=SC2086
  (cd .gpu/debs && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  echo "prepare.sh: $(ls .gpu/debs)" >&2
fi

# Smoke tests here: both binaries start, and without a GPU they say so (gpu_step: exit 2 for
# Vulkan; lofi: a clear error for CUDA when there is no NVIDIA driver); lofi runs the tiny demo
# on the CPU (writes, decodes, trains, detects; about 30 s) with the carried libraries in front
# of the system's, as they will be on the device.
set +e
# (A discrete GPU only, as check.sh pins it: Mesa's lavapipe, a CPU Vulkan, would be taken and
# crashes in its pipeline compiler on burn's matmul kernels.)
msg=$(CUBECL_WGPU_DEFAULT_DEVICE="DiscreteGpu(0)" .gpu/gpu_step.tmp --device vulkan --fidelity 4x32 --depth 18 --base-width 4 --tiny-head --steps 1 --warmup 0 2>&1)
rc=$?
echo "prepare.sh: gpu_step --device vulkan smoke test: exit $rc: $(echo "$msg" | tail -1)" >&2
if [ $rc -ne 0 ] && [ $rc -ne 2 ]; then
  echo "prepare.sh: gpu_step failed in an unexpected way" >&2
  exit 1
fi
msg=$(.gpu-demo/lofi.tmp --device cuda device 2>&1)
rc=$?
echo "prepare.sh: lofi --device cuda device: exit $rc: $(echo "$msg" | tail -1)" >&2
if [ "${SKIP_LIBS:-0}" != 1 ]; then
  rm -rf .gpu-demo/smoke && mkdir -p .gpu-demo/smoke/lib
  xz -dc .gpu-demo/lofi-libs.tar.xz | tar -xf - -C .gpu-demo/smoke/lib
  t=$(date +%s)
  LD_LIBRARY_PATH=.gpu-demo/smoke/lib timeout 300 .gpu-demo/lofi.tmp --device cpu demo --size tiny \
    --seeds 1 --out .gpu-demo/smoke/demo --json .gpu-demo/smoke/demo.json --fresh >.gpu-demo/smoke/log 2>&1
  rc=$?
  echo "prepare.sh: lofi --device cpu demo --size tiny with the carried libraries: exit $rc in $(($(date +%s) - t)) s" >&2
  if [ $rc -ne 0 ] || [ ! -s .gpu-demo/smoke/demo.json ]; then
    tail -5 .gpu-demo/smoke/log >&2
    echo "prepare.sh: lofi's demo fails with the carried libraries" >&2
    rm -rf .gpu-demo/smoke
    exit 1
  fi
  rm -rf .gpu-demo/smoke
fi
set -e
rm -f .gpu/gpu_step.tmp .gpu-demo/lofi.tmp
mib() { echo $(($(du -sb "$1" | cut -f1) / 1048576)); }
a=$(mib .gpu); b=$(mib .gpu-demo); c=0; cache=""
if [ -n "$(ls .gpu-cache/kernels-*.tar.xz 2>/dev/null)" ]; then c=$(mib .gpu-cache); cache=", \".gpu-cache\""; fi
echo "prepare.sh: .gpu $a MiB, .gpu-demo $b MiB, .gpu-cache $c MiB (the device tool carries 64 MiB per call, the working tree included)" >&2
echo "prepare.sh: ready. Device tool call (timeout_s 540):" >&2
if [ $((a + b + c)) -le 58 ]; then
  echo "  carry [\".gpu\", \".gpu-demo\"$cache], command: OUT=\$OUT bash bench/gpu/check.sh" >&2
else
  echo "  carry [\".gpu\"$cache], command: OUT=\$OUT PARTS=\"torch burn\" bash bench/gpu/check.sh" >&2
  echo "  carry [\".gpu-demo\"], command: OUT=\$OUT PARTS=demo bash bench/gpu/check.sh (a second call)" >&2
fi
