#!/usr/bin/env bash
# Lays out libtorch for lofi's `tch` feature from PyTorch's PyPI wheels, without PyTorch's own
# download site (unreachable here) and without installing torch into any Python environment.
#
#   scripts/libtorch.sh cpu    # target/libtorch-2.11.0/torch        (tests, CI; about 500 MB)
#   scripts/libtorch.sh cuda   # target/libtorch-2.11.0-cuda/torch   (the GPU build; links only)
#
# Prints the folder to use as LIBTORCH on its last line. Idempotent: a layout that is already
# complete (its `.complete` stamp exists) is left alone and nothing is downloaded. The wheels go
# to a temporary folder that is deleted afterwards.
#
# Why this shape (details: docs/architecture.md, "LibTorch backend"):
# - PyPI's x86-64 torch wheel is a CUDA build; its libtorch_cpu.so needs libcudart and libcupti
#   even on the CPU, which come from two small NVIDIA wheels and are found through libtorch's
#   RPATH `$ORIGIN/../../nvidia/cu13/lib`, so `torch/lib` and `nvidia/cu13/lib` keep the wheel's
#   relative layout.
# - torch-sys always links `-ltorch`; the CPU layout has no libtorch.so (it would pull in the
#   CUDA libraries), so an empty stand-in satisfies the linker and `--as-needed` drops it.
# - The CUDA layout adds libtorch_cuda.so (its presence makes burn-tch build the CUDA variant);
#   cuDNN, cuBLAS and the rest are not needed to link, and at run time come from the GPU
#   machine's own torch installation.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
CUDA_RUNTIME_VERSION=13.0.96
CUPTI_VERSION=13.0.85

variant=${1:-cpu}
case "$variant" in
  cpu) root=target/libtorch-$TORCH_VERSION ;;
  cuda) root=target/libtorch-$TORCH_VERSION-cuda ;;
  *)
    echo "usage: scripts/libtorch.sh cpu|cuda (got '$variant')" >&2
    exit 2
    ;;
esac

if [ -f "$root/.complete" ]; then
  echo "libtorch $TORCH_VERSION ($variant) already laid out in $root" >&2
  echo "$PWD/$root/torch"
  exit 0
fi

for tool in python3 cc; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "scripts/libtorch.sh: '$tool' is needed (Debian: apt-get install python3 gcc)" >&2
    exit 1
  fi
done
# Extracts the members of wheel $1 that match the shell patterns $2... into $partial.
extract() {
  python3 - "$partial" "$@" <<'PY'
import fnmatch, sys, zipfile
dest, wheel, patterns = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if any(fnmatch.fnmatch(n, p) for p in patterns)]
    missing = [p for p in patterns if not any(fnmatch.fnmatch(n, p) for n in names)]
    if missing:
        sys.exit(f"scripts/libtorch.sh: {wheel} has no {', '.join(missing)}")
    for n in names:
        z.extract(n, dest)
PY
}

work=$(mktemp -d)
partial="$root.partial"
trap 'rm -rf "$work" "$partial"' EXIT
rm -rf "$partial"
mkdir -p "$partial"

echo "libtorch: downloading torch==$TORCH_VERSION and two NVIDIA runtime wheels (about 543 MB)" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  -d "$work" \
  "torch==$TORCH_VERSION" \
  "nvidia-cuda-runtime==$CUDA_RUNTIME_VERSION" \
  "nvidia-cuda-cupti==$CUPTI_VERSION"

torch_files=('torch/include/*' 'torch/lib/libtorch_cpu.so' 'torch/lib/libc10.so' 'torch/lib/libgomp.so.1')
if [ "$variant" = cuda ]; then
  torch_files+=('torch/lib/libtorch_cuda.so' 'torch/lib/libc10_cuda.so' 'torch/lib/libtorch_nvshmem.so')
fi
extract "$work"/torch-"$TORCH_VERSION"-*.whl "${torch_files[@]}" 'torch/version.py'
extract "$work"/nvidia_cuda_runtime-*.whl 'nvidia/cu13/lib/libcudart.so.13'
extract "$work"/nvidia_cuda_cupti-*.whl 'nvidia/cu13/lib/libcupti.so.13'
# zipfile keeps no permissions; the libraries need none beyond reading.
rm -rf "$work"

# torch-sys passes -ltorch; an empty library satisfies it and --as-needed drops it again.
cc -shared -o "$partial/torch/lib/libtorch.so" -x c /dev/null
echo "$TORCH_VERSION" >"$partial/torch/lofi-libtorch-version"

rm -rf "$root"
mv "$partial" "$root"
touch "$root/.complete"
echo "libtorch $TORCH_VERSION ($variant) laid out in $root ($(du -sh "$root" | cut -f1))" >&2
echo "$PWD/$root/torch"
