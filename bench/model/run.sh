#!/usr/bin/env bash
# One training step of TSM-R18 + G-TAD at full fidelity and at each LoFi preset, and feature
# extraction (the encoder's forward pass, 100 x 224 frames per video), in lofi-model (burn, flex
# CPU backend) and in PyTorch when a python with torch is given; one process per configuration so
# each peak-memory figure is its own, burn and PyTorch back to back for each configuration. Ends
# with the table burn / PyTorch (wall time, CPU time of the process, memory growth). Not run in CI.
#
# Usage: bench/model/run.sh [python-with-torch] [steps]
#   CONFIGS="25 224 T-LoFi;..." limits the training configurations (default: all four);
#   EXTRACT=0 skips extraction; BASELINE=1 also runs burn with LOFI_FASTCONV=0 (burn's own
#   convolution and BatchNorm, i.e. without lofi-model's fastconv/fastbn) for a before/after column;
#   REPEAT=n runs each configuration's processes n times, interleaved (burn, PyTorch, burn, ...),
#   and the tables give the median of each column (the shared machines are noisy: one process can
#   take 20 % more or less than the next).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${1:-}"
STEPS="${2:-2}"
CONFIGS="${CONFIGS:-100 224 full;100 112 S-LoFi;25 224 T-LoFi;50 158 ST-LoFi}"
EXTRACT="${EXTRACT:-1}"
BASELINE="${BASELINE:-0}"
REPEAT="${REPEAT:-1}"
cargo bench -p lofi-model --bench train_step --no-run
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

run() { # label, then the command; keeps its result line tagged with the label
  local label="$1"
  shift
  local line
  line="$("$@" | tail -n 1)"
  echo "$line"
  echo "$label $line" >>"$log"
}
baseline() { # label, then the burn command: run again without fastconv/fastbn
  local label="$1"
  shift
  if [ "$BASELINE" = 1 ]; then
    local line
    line="$(LOFI_FASTCONV=0 "$@" | tail -n 1)"
    echo "(LOFI_FASTCONV=0) $line"
    echo "$label base-$line" >>"$log"
  fi
}

IFS=';' read -ra cfgs <<<"$CONFIGS"
for cfg in "${cfgs[@]}"; do
  set -- $cfg
  echo "== $3 (L=$1, S=$2)"
  for _ in $(seq "$REPEAT"); do
    baseline "$3" cargo bench -q -p lofi-model --bench train_step -- --snippets "$1" --size "$2" --steps "$STEPS"
    run "$3" cargo bench -q -p lofi-model --bench train_step -- --snippets "$1" --size "$2" --steps "$STEPS"
    if [ -n "$PY" ]; then
      run "$3" "$PY" bench/model/train_step.py --snippets "$1" --size "$2" --steps "$STEPS" --threads "$(nproc)"
    fi
  done
done
if [ "$EXTRACT" = 1 ]; then
  echo "== extraction (L=100, S=224)"
  for _ in $(seq "$REPEAT"); do
    baseline extract cargo bench -q -p lofi-model --bench train_step -- --extract --snippets 100 --size 224 --steps "$STEPS"
    run extract cargo bench -q -p lofi-model --bench train_step -- --extract --snippets 100 --size 224 --steps "$STEPS"
    if [ -n "$PY" ]; then
      run extract "$PY" bench/model/train_step.py --extract --snippets 100 --size 224 --steps "$STEPS" --threads "$(nproc)"
    fi
  done
fi

echo
echo "## burn / PyTorch, this run ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) threads, load $(cut -d' ' -f1-3 /proc/loadavg), median of $REPEAT interleaved run(s) per cell)"
echo
awk '
  function val(key,   i, kv) {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == key) return kv[2] }
    return ""
  }
  {
    side = ($2 ~ /^base-/) ? "base" : (($2 ~ /^burn/) ? "burn" : "torch")
    if (!($1 in seen)) { seen[$1] = 1; order[n++] = $1 }
    r = ++runs[$1, side]
    if ($1 == "extract") {
      T[$1, side, r] = val("sec_per_video"); C[$1, side, r] = val("cpu_sec_per_video"); F[$1, side, r] = val("frames_per_s")
    } else { T[$1, side, r] = val("sec_per_step"); C[$1, side, r] = val("cpu_sec_per_step") }
    G[$1, side, r] = val("growth_mib")
  }
  # Median of the runs of one configuration and side (the lower middle value for an even count).
  function median(A, k, side,   m, i, j, v, x) {
    m = runs[k, side]
    for (i = 1; i <= m; i++) v[i] = A[k, side, i] + 0
    for (i = 2; i <= m; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
    return m ? v[int((m + 1) / 2)] : ""
  }
  function ratio(a, b) { return (a != "" && b != "" && b > 0) ? sprintf("%.2fx", a / b) : "-" }
  function or_dash(v) { return v == "" ? "-" : v }
  END {
    for (key in runs) {
      split(key, ks, SUBSEP)
      t[key] = median(T, ks[1], ks[2]); c[key] = median(C, ks[1], ks[2])
      fps[key] = median(F, ks[1], ks[2]); g[key] = median(G, ks[1], ks[2])
    }
    print "| configuration | burn s | PyTorch s | burn / PyTorch time | burn CPU s | PyTorch CPU s | burn / PyTorch CPU | burn growth MiB | PyTorch growth MiB | burn / PyTorch memory |"
    print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for (i = 0; i < n; i++) {
      k = order[i]
      label = (k == "extract") ? sprintf("extraction 100x224 (s/video; %s vs %s frames/s)", fps[k, "burn"], or_dash(fps[k, "torch"])) : k " (s/step)"
      blabel = (k == "extract") ? "extraction 100x224 (s/video)" : k " (s/step)"
      if (t[k, "base"] != "") before = before sprintf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", blabel, t[k, "base"], t[k, "burn"], ratio(t[k, "burn"], t[k, "base"]), c[k, "base"], c[k, "burn"], ratio(c[k, "burn"], c[k, "base"]), ratio(g[k, "burn"], g[k, "base"]))
      printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", label, t[k, "burn"], or_dash(t[k, "torch"]), ratio(t[k, "burn"], t[k, "torch"]), or_dash(c[k, "burn"]), or_dash(c[k, "torch"]), ratio(c[k, "burn"], c[k, "torch"]), g[k, "burn"], or_dash(g[k, "torch"]), ratio(g[k, "burn"], g[k, "torch"])
    }
    if (before != "") {
      print ""
      print "burn with / without the fastconv + fastbn modules of lofi-model (LOFI_FASTCONV=0), same run:"
      print ""
      print "| configuration | without s | with s | with / without time | without CPU s | with CPU s | with / without CPU | with / without memory |"
      print "|---|---:|---:|---:|---:|---:|---:|---:|"
      printf "%s", before
    }
  }' "$log"
