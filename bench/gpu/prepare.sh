#!/usr/bin/env bash
# Prepares `.gpu/` for bench/gpu/check.sh, on a build machine with Rust and package-registry
# access (the device machine has neither): builds the burn training-step bench in release with the
# Vulkan (wgpu) backend, strips and gzips it, and downloads the Vulkan loader .deb (amd64) that the device
# image lacks. `.gpu/` ignores itself (`.gpu/.gitignore` = `*`), so it is never committed; name
# it in the device tool's `carry`.
#
# Reuse an existing build with CARGO_TARGET_DIR=/path/to/target. Set SKIP_DEBS=1 to skip apt.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
mkdir -p .gpu/debs
# Self-ignoring folder: git never lists it, and the device tool carries it only when named.
echo '*' >.gpu/.gitignore

if [ "$(uname -m)" != x86_64 ]; then
  echo "prepare.sh: this machine is $(uname -m); the device machine is x86_64, build there-compatible" >&2
  exit 1
fi

echo "prepare.sh: building gpu_step (release, --features vulkan)" >&2
exe=$(cargo build --release -p lofi-model --features vulkan --bench gpu_step \
  --message-format=json-render-diagnostics |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "gpu_step" and m.get("executable"):
        print(m["executable"])')
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
  echo "prepare.sh: cargo did not report the gpu_step executable" >&2
  exit 1
fi
# The stripped binary is about 85 MB and the device tool carries 64 MiB at most: carry it gzipped
# (about 20 MB); check.sh unpacks it.
rm -f .gpu/gpu_step
strip -o .gpu/gpu_step.tmp "$exe" 2>/dev/null || cp "$exe" .gpu/gpu_step.tmp
gzip -9 -c .gpu/gpu_step.tmp >.gpu/gpu_step.gz.tmp
mv .gpu/gpu_step.gz.tmp .gpu/gpu_step.gz
echo "prepare.sh: .gpu/gpu_step.gz $(du -h .gpu/gpu_step.gz | cut -f1)" >&2

if [ "${SKIP_DEBS:-0}" != 1 ]; then
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  mkdir -p /tmp/amd64/partial
  # shellcheck disable=SC2086
  apt-get $o update >/dev/null
  rm -f .gpu/debs/*.deb
  # shellcheck disable=SC2086
  # The loader, plus the GL dispatch libraries the NVIDIA ICD (libGLX_nvidia) links against; the
  # device notes list exactly these as what made Vulkan run there.
  (cd .gpu/debs && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  echo "prepare.sh: $(ls .gpu/debs)" >&2
fi

# Smoke test here: the binary must start; without a GPU it must say so and exit 2.
set +e
msg=$(.gpu/gpu_step.tmp --device vulkan --fidelity 4x32 --depth 18 --base-width 4 --tiny-head --steps 1 --warmup 0 2>&1)
rc=$?
set -e
echo "prepare.sh: smoke test exit $rc: $(echo "$msg" | tail -2)" >&2
if [ $rc -ne 0 ] && [ $rc -ne 2 ]; then
  echo "prepare.sh: gpu_step failed in an unexpected way" >&2
  exit 1
fi
rm -f .gpu/gpu_step.tmp
du -sh .gpu >&2
echo "prepare.sh: ready; carry .gpu and run: bash bench/gpu/check.sh" >&2
