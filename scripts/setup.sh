#!/usr/bin/env bash
# Installs what lofi needs to build and test on a fresh Debian machine, and nothing when it is
# already there: FFmpeg's development libraries (video decoding and the synthetic benchmark's
# encoder), clang and pkg-config (ffmpeg-sys-next's bindings), libhdf5-dev (HDF5 feature files,
# through the hdf5-metno crate), python3 (the evaluation oracle) and python3-venv (the Python
# package's tests install it into a virtual environment). Extra Debian
# packages given as arguments are installed the same way (scripts/slurm-test.sh).
set -euo pipefail

packages=(
  pkg-config clang libclang-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
  libhdf5-dev
  python3 python3-venv
  "$@"
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]})); then
  echo "lofi setup: installing ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "lofi setup: cargo is not on PATH; install Rust (stable) first: https://rustup.rs" >&2
  exit 1
fi
