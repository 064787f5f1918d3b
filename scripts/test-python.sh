#!/usr/bin/env bash
# The Python package's test command (README, "Python"): installs crates/lofi-py with pip into a
# fresh virtual environment, as a user would (maturin compiles the extension in release mode),
# then runs its pytest suite against the pure-Python oracle in test-tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
venv="${LOFI_PY_VENV:-$PWD/target/py-venv}"
rm -rf "$venv"
python3 -m venv "$venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/pip" install -q ./crates/lofi-py pytest hypothesis pandas
cd crates/lofi-py
"$venv/bin/python" -m pytest -q -p no:cacheprovider pytests "$@"
