#!/usr/bin/env bash
# The Slurm example (examples/slurm/) on a real one-node Slurm cluster: installs Debian's Slurm
# daemons, client and munge (about 13 MB), then runs crates/lofi/tests/slurm.rs, which starts its
# own cluster on 127.0.0.1 under a temporary folder, runs the README's commands, and stops it.
# Needs root (slurmd launches the jobs as their user). CI runs it after scripts/test.sh, whose
# build it reuses; it is not part of scripts/test.sh because installing the packages also
# installs (and on systemd machines enables) the system's munge, slurmctld and slurmd services.
# Extra arguments go to `cargo test` (CI passes scripts/test.sh's `--features`, so that this
# reuses that build instead of building burn again with other features).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh slurmctld slurmd slurm-client munge
cargo test --workspace --locked --test slurm "$@" -- --ignored --nocapture
