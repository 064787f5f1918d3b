#!/usr/bin/env bash
# Prepares what bench/gpu/check.sh runs, on a build machine with Rust and package-registry access
# (the device machine has neither): builds the training-step bench `gpu_step` and the `lofi`
# binary in release with both GPU backends (--features vulkan,cuda: CUDA kernels through NVRTC,
# which builds offline), strips and xz-compresses them, and fetches what the device image lacks.
# Three folders, because the device tool carries 64 MiB per call and `lofi` needs the ffmpeg
# shared libraries it links (127 libraries, over 40 MB compressed; the device image has none):
#   .gpu/       gpu_step.xz and the Vulkan loader .debs: the benchmarks (PyTorch, burn-cuda,
#               burn-vulkan);
#   .gpu-demo/  lofi.xz: the tiny demo end to end on the GPU;
#   .gpu-libs/  lofi-libs.tar.xz: the libraries lofi needs there.
# All ignore themselves (`.gitignore` = `*`), so they are never committed; name them in the
# device tool's `carry`. The script prints their sizes and the calls that carry them.
#
# Knobs: CARGO_TARGET_DIR reuses a build; CUDARC_CUDA_VERSION is the CUDA version the driver
# bindings are built for when no CUDA toolkit (nvcc) is installed here (default 13000, the H200
# machine's driver 580); PROFILE (default release; dev for a quick check of this script);
# SKIP_DEBS=1 skips apt; SKIP_LIBS=1 skips the ffmpeg libraries (then the
# demo cannot run on the device machine).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
mkdir -p .gpu/debs .gpu-demo .gpu-libs
# Self-ignoring folders: git never lists them, and the device tool carries them only when named.
for d in .gpu .gpu-demo .gpu-libs; do echo '*' >"$d/.gitignore"; done

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
for pair in ".gpu/gpu_step:$STEP" ".gpu-demo/lofi:$LOFI"; do
  name=${pair%%:*}
  strip -o "$name.tmp" "${pair#*:}" 2>/dev/null || cp "${pair#*:}" "$name.tmp"
  xz -9 -T2 -c "$name.tmp" >"$name.xz.tmp"
  mv "$name.xz.tmp" "$name.xz"
  echo "prepare.sh: $name.xz $(du -h "$name.xz" | cut -f1) ($(du -h "$name.tmp" | cut -f1) stripped)" >&2
done

# The shared libraries lofi needs beyond the C runtime (ffmpeg and what it links), for the demo.
if [ "${SKIP_LIBS:-0}" != 1 ]; then
  rm -rf .gpu-demo/libs.tmp && mkdir -p .gpu-demo/libs.tmp
  ldd .gpu-demo/lofi.tmp | awk '/=> \// {print $3}' |
    grep -v -E '/(libc|libm|libgcc_s|ld-linux-x86-64|libpthread|libdl|librt|libstdc\+\+|libresolv)\.so' |
    while read -r lib; do cp -L "$lib" .gpu-demo/libs.tmp/; done
  tar -cf - -C .gpu-demo/libs.tmp . | xz -9 -T2 >.gpu-libs/lofi-libs.tar.xz
  echo "prepare.sh: .gpu-libs/lofi-libs.tar.xz $(du -h .gpu-libs/lofi-libs.tar.xz | cut -f1) ($(ls .gpu-demo/libs.tmp | wc -l) libraries)" >&2
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
# Vulkan; lofi: a clear error for CUDA when there is no NVIDIA driver).
set +e
msg=$(.gpu/gpu_step.tmp --device vulkan --fidelity 4x32 --depth 18 --base-width 4 --tiny-head --steps 1 --warmup 0 2>&1)
rc=$?
echo "prepare.sh: gpu_step --device vulkan smoke test: exit $rc: $(echo "$msg" | tail -1)" >&2
if [ $rc -ne 0 ] && [ $rc -ne 2 ]; then
  echo "prepare.sh: gpu_step failed in an unexpected way" >&2
  exit 1
fi
msg=$(.gpu-demo/lofi.tmp --device cuda device 2>&1)
rc=$?
echo "prepare.sh: lofi --device cuda device: exit $rc: $(echo "$msg" | tail -1)" >&2
set -e
rm -f .gpu/gpu_step.tmp .gpu-demo/lofi.tmp
mib() { echo $(($(du -sb "$1" | cut -f1) / 1048576)); }
a=$(mib .gpu); b=$(mib .gpu-demo); c=$(mib .gpu-libs)
echo "prepare.sh: .gpu $a MiB, .gpu-demo $b MiB, .gpu-libs $c MiB (the device tool carries 64 MiB per call, the working tree included)" >&2
echo "prepare.sh: ready. Device tool calls (timeout_s 540 for the first, 240 for the demo):" >&2
if [ $((a + b + c)) -le 60 ]; then
  echo "  carry [\".gpu\", \".gpu-demo\", \".gpu-libs\"], command: OUT=\$OUT bash bench/gpu/check.sh" >&2
elif [ $((b + c)) -le 60 ]; then
  echo "  carry [\".gpu\"], command: OUT=\$OUT PARTS=\"torch burn\" bash bench/gpu/check.sh" >&2
  echo "  carry [\".gpu-demo\", \".gpu-libs\"], command: OUT=\$OUT PARTS=demo bash bench/gpu/check.sh" >&2
else
  echo "  carry [\".gpu\"], command: OUT=\$OUT PARTS=\"torch burn libs\" bash bench/gpu/check.sh" >&2
  echo "  NOT POSSIBLE as is: .gpu-demo + .gpu-libs exceed one call; the libraries would have to be" >&2
  echo "  unpacked by one call (PARTS=libs, carry .gpu-libs) and used by the next on the same warm machine" >&2
  echo "  (PARTS=demo, carry .gpu-demo), which the device tool does not promise" >&2
fi
