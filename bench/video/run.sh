#!/usr/bin/env bash
# lofi-video sampling benchmark against decord and PyAV, same files, same run, one decoding
# thread each. Not part of CI: it pip-installs the Python peers into a throwaway venv.
#
#   bench/video/run.sh            # everything (about 10 minutes on 2 cores)
#   REPEATS=5 COUNT=500 bench/video/run.sh
#
# Steps: build the `sample_throughput` bench binary; write the test videos with our own encoder
# front end (libx264 from Debian's FFmpeg): 60 s 1280x720 and 320x240 H.264 at 30 fps with a
# keyframe every 5 s, plus 50 videos of 10 s at 320x240 for the 500-video memory run; then the
# same task for each tool: open a video, take 100 snippets x 1 frame at 224 px (short side
# resized to 224, centre crop), report frames per second (median of REPEATS) and, over COUNT
# videos, resident memory at checkpoints and its peak.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${VENV:-/tmp/lofi-bench-venv}
DATA=${DATA:-/tmp/lofi-video-bench}
REPEATS=${REPEATS:-3}
COUNT=${COUNT:-500}
OUT=${OUT:-$DATA/results.txt}

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q "decord==0.6.0" "av==18.1.0" "numpy>=1.26,<3"

bench() { cargo bench -q -p lofi-video --bench sample_throughput -- "$@"; }
cargo bench -q -p lofi-video --bench sample_throughput --no-run
if [ ! -f "$DATA/many/m_49.mp4" ]; then
  echo "writing test videos to $DATA" >&2
  bench gen "$DATA"
fi

peers() { "$VENV/bin/python" bench/video/peers.py "$@" 2>/dev/null; }
: > "$OUT"
{
  echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  for spec in "hd720.mp4 1280 720" "qvga.mp4 320 240"; do
    set -- $spec
    bench sample "$DATA/$1" "$REPEATS"
    peers decord sample "$DATA/$1" "$2" "$3" "$REPEATS"
    peers pyav sample "$DATA/$1" "$2" "$3" "$REPEATS"
  done
  bench many "$DATA/many" "$COUNT"
  peers decord many "$DATA/many" 320 240 "$COUNT"
  peers pyav many "$DATA/many" 320 240 "$COUNT"
} | tee -a "$OUT"

"$VENV/bin/python" - "$OUT" <<'PY'
import re, sys
rows = [dict(re.findall(r"(\w+)=(\S+)", l)) for l in open(sys.argv[1]) if l.startswith("RESULT")]
def get(tool, key, val):
    return next((r for r in rows if r["tool"] == tool and key in r and r[key].endswith(val)), None)
print("\n| task | lofi fps | decord fps | PyAV fps | lofi / decord | lofi / PyAV |")
print("|---|---:|---:|---:|---:|---:|")
for name, key, val in [("60 s 1280x720, 100 x 1 @224", "file", "hd720.mp4"),
                       ("60 s 320x240, 100 x 1 @224", "file", "qvga.mp4"),
                       ("500 videos 10 s 320x240", "many", "")]:
    r = {t: get(t, key, val) for t in ("lofi", "decord", "pyav")}
    if not all(r.values()):
        continue
    f = {t: float(r[t]["fps"]) for t in r}
    print(f"| {name} | {f['lofi']:.1f} | {f['decord']:.1f} | {f['pyav']:.1f} | "
          f"{f['lofi'] / f['decord']:.2f} | {f['lofi'] / f['pyav']:.2f} |")
peaks = {r["tool"]: r["peak_rss_mib"] for r in rows if "peak_rss_mib" in r}
print("\npeak RSS over the many-video run (MiB):", ", ".join(f"{t} {v}" for t, v in peaks.items()))
PY
