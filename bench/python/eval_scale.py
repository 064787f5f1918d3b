"""Times lofi's Python API and the numpy peer on the same ActivityNet-scale input, in one process.

Usage: eval_scale.py DATA_DIR [RUNS]   (DATA_DIR from test-tools/make_anet_scale.py)

For each task (detection mAP, proposal AR@AN) it reports the median wall time and CPU time of
RUNS calls of: the numpy peer (its run_detection / run_proposals, JSON parsing included), lofi
from the two JSON paths, lofi from the same files already loaded with json.load (dicts), and lofi
from pandas DataFrames with the official columns (building the DataFrames is timed separately:
a peer that has its predictions in a DataFrame pays nothing for it). It checks that every lofi
result equals the peer's to 1e-12 and prints a Markdown table.
"""

import argparse
import importlib.util
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import lofi

REPO = Path(__file__).resolve().parents[2]


def load_peer():
    spec = importlib.util.spec_from_file_location(
        "anet_numpy", REPO / "test-tools" / "anet_numpy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(call, runs):
    walls, cpus, result = [], [], None
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def max_difference(a, b):
    if isinstance(a, dict):
        assert list(a) == list(b), (list(a)[:3], list(b)[:3])
        return max((max_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        return max((max_difference(x, y) for x, y in zip(a, b)), default=0.0)
    return abs(float(a) - float(b))


def frame(results, with_label):
    rows = {"video-id": [], "t-start": [], "t-end": [], "score": []}
    if with_label:
        rows["label"] = []
    for video, entries in results["results"].items():
        for e in entries:
            rows["video-id"].append(video)
            rows["t-start"].append(e["segment"][0])
            rows["t-end"].append(e["segment"][1])
            rows["score"].append(e["score"])
            if with_label:
                rows["label"].append(e["label"])
    return pd.DataFrame(rows)


def gt_frame(ground_truth):
    rows = [(vid, a["segment"][0], a["segment"][1], a["label"])
            for vid, v in ground_truth["database"].items() if v["subset"] == "validation"
            for a in v["annotations"]]
    return pd.DataFrame(rows, columns=["video-id", "t-start", "t-end", "label"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("runs", nargs="?", type=int, default=3)
    a = parser.parse_args()
    data = Path(a.data)
    gt_path, det_path, prop_path = (data / "ground_truth.json", data / "detections.json",
                                    data / "proposals.json")
    peer = load_peer()
    print(f"python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
          f"lofi {lofi.__version__}; median of {a.runs} runs; "
          f"{det_path.stat().st_size / 1e6:.1f} MB detections, "
          f"{prop_path.stat().st_size / 1e6:.1f} MB proposals", file=sys.stderr)
    rows = []
    for task, path, evaluate, extra in [
        ("detection mAP", det_path, lofi.evaluate_detection, {}),
        ("proposal AR@AN", prop_path, lofi.evaluate_proposals, {"max_avg_proposals": 100}),
    ]:
        args = argparse.Namespace(ground_truth=str(gt_path), subset="validation",
                                  tiou="0.5:0.95:10", blocked_videos=None)
        if task.startswith("detection"):
            args.predictions = str(path)
            peer_call = lambda: peer.run_detection(args)  # noqa: E731
        else:
            args.proposals = str(path)
            args.max_avg_proposals = 100
            peer_call = lambda: peer.run_proposals(args)  # noqa: E731
        peer_wall, peer_cpu, expected = measure(peer_call, a.runs)
        rows.append((task, "numpy peer (files)", peer_wall, peer_cpu, None))

        wall, cpu, result = measure(lambda: evaluate(gt_path, path, **extra), a.runs)
        rows.append((task, "lofi from files", wall, cpu, max_difference(result, expected)))

        load_wall, load_cpu, loaded = measure(
            lambda: (json.loads(gt_path.read_text()), json.loads(path.read_text())), 1)
        gt_dict, pred_dict = loaded
        rows.append((task, "(json.load of both files)", load_wall, load_cpu, None))
        wall, cpu, result = measure(lambda: evaluate(gt_dict, pred_dict, **extra), a.runs)
        rows.append((task, "lofi from dicts", wall, cpu, max_difference(result, expected)))

        build_wall, build_cpu, frames = measure(
            lambda: (gt_frame(gt_dict), frame(pred_dict, task.startswith("detection"))), 1)
        rows.append((task, f"(building the DataFrames, {len(frames[1]):,} rows)", build_wall,
                     build_cpu, None))
        wall, cpu, result = measure(lambda: evaluate(frames[0], frames[1], **extra), a.runs)
        rows.append((task, "lofi from DataFrames", wall, cpu, max_difference(result, expected)))

    print("| task | tool / input | wall s | CPU s | peer / this (wall) | max diff vs peer |")
    print("|---|---|---:|---:|---:|---:|")
    peer_wall = None
    for task, tool, wall, cpu, diff in rows:
        if tool.startswith("numpy"):
            peer_wall = wall
        ratio = "" if tool.startswith(("numpy", "(")) else f"{peer_wall / wall:.1f}x"
        difference = "" if diff is None else f"{diff:.0e}" if diff else "0"
        print(f"| {task} | {tool} | {wall:.3f} | {cpu:.3f} | {ratio} | {difference} |")
    worst = max(r[4] for r in rows if r[4] is not None)
    assert worst <= 1e-12, f"lofi and the peer differ by {worst}"


if __name__ == "__main__":
    main()
