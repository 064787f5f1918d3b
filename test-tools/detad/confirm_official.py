#!/usr/bin/env python3
"""Confirms test-tools/detad_reference.py against DETAD's own code (run once, outside the repo).

DETAD's `src/action_detector_diagnosis.py` and the three analysis scripts are imported from
DETAD_SRC with the least change that lets them run on a current stack: `np.int`/`np.float`
(removed from numpy) are restored as the builtins before import, joblib's Parallel is replaced
by a sequential loop, and LaTeX text rendering is switched off (nothing is plotted). On random
tie-free inputs (training-subset videos, annotations reaching past the video's end, annotated
videos without predictions; no predictions for videos without ground truth, which DETAD's
analyze_fp_error_types mistypes, see the oracle's notes) the numbers behind DETAD's three figures are computed
by DETAD's functions and by the oracle, and the largest differences are printed.

It also checks the oracle's characteristics (length, coverage, number of instances and their
THUMOS14 buckets) against DETAD's published THUMOS14 characteristics file, with each video's
duration taken as length / coverage of its first annotation rounded to 3 decimals (DETAD's file
has no durations; the THUMOS14 test durations are multiples of 1 ms).

Usage (numpy, pandas, matplotlib, joblib in a scratch venv; DETAD's src/ and data/ extracted):
    python test-tools/detad/confirm_official.py DETAD_DIR
"""
import json
import math
import os
import random
import subprocess
import sys
import tempfile

import numpy as np

np.int = int
np.float = float
np.infty = np.inf

HERE = os.path.dirname(os.path.abspath(__file__))
ORACLE = os.path.join(HERE, "..", "detad_reference.py")
SIZES5 = ["XS", "S", "M", "L", "XL"]
ANET_BINS = {
    "coverage": (np.linspace(0, 1.0, 6), SIZES5),
    "length": (np.array([0, 30, 60, 120, 180, np.inf]), SIZES5),
    "num-instances": (np.array([-1, 1, 4, 8, np.inf]), SIZES5[:4]),
}
THUMOS_BINS = {
    "coverage": (np.array([0, 0.02, 0.04, 0.06, 0.08, 1]), SIZES5),
    "length": (np.array([0, 3, 6, 12, 18, np.inf]), SIZES5),
    "num-instances": (np.array([-1, 1, 40, 80, np.inf]), SIZES5[:4]),
}


def import_detad(src):
    sys.path.insert(0, src)
    import matplotlib
    matplotlib.use("Agg")
    import joblib

    class Sequential:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, jobs):
            return [f(*a, **k) for f, a, k in jobs]

    joblib.Parallel = Sequential
    import action_detector_diagnosis as add
    add.Parallel = Sequential
    import false_negative_analysis as fna
    import false_positive_analysis as fpa
    import sensitivity_analysis as sa
    matplotlib.rcParams["text.usetex"] = False
    return add, fpa, fna, sa


def random_case(seed, dataset):
    rng = random.Random(seed)
    nclass = rng.randint(3, 7)
    labels = ["class %d" % c for c in range(nclass)]
    scale = 1.0 if dataset == "activitynet" else 0.1
    database = {}
    annotated = []
    for v in range(rng.randint(15, 45)):
        vid = "vid_%d_%d" % (seed, v)
        subset = "validation" if rng.random() < 0.85 else "training"
        duration = round(rng.uniform(20, 400) * (1 if dataset == "activitynet" else 3), 3)
        anns = []
        for _ in range(rng.randint(0, 9 if dataset == "activitynet" else 60)):
            length = rng.uniform(0.5, 250) * scale
            start = rng.uniform(0, duration * 0.95)
            end = start + length
            if rng.random() < 0.9:
                end = min(end, duration)  # otherwise may reach past the end (coverage > 1)
            anns.append({"segment": [start, end], "label": labels[rng.randrange(nclass)]})
        n = len(anns)
        for a in anns:
            length = a["segment"][1] - a["segment"][0]
            a["length"] = length
            a["coverage"] = length / duration
            a["num-instances"] = n
        database[vid] = {"subset": subset, "duration": duration, "annotations": anns}
        # Predictions only for videos that keep ground truth once DETAD leaves out coverage > 1.
        if subset == "validation" and any(a["coverage"] <= 1.0 for a in anns):
            annotated.append((vid, duration, anns))
    used = set()
    present = sorted({a["label"] for _, _, anns in annotated for a in anns})

    def score():
        while True:
            s = rng.random()
            if s not in used:
                used.add(s)
                return s

    results = {}
    for vid, duration, anns in annotated:
        if rng.random() < 0.1:
            continue
        dets = []
        for _ in range(rng.randint(1, 40)):
            if anns and rng.random() < 0.6:
                a = anns[rng.randrange(len(anns))]
                s, e = a["segment"]
                j = (e - s) * 0.4
                s2 = max(0.0, s + rng.uniform(-j, j))
                e2 = max(s2 + 0.01, e + rng.uniform(-j, j))
                label = a["label"] if rng.random() < 0.7 else rng.choice(present)
            else:
                s2 = rng.uniform(0, duration * 0.9)
                e2 = s2 + rng.uniform(0.1, duration * 0.5)
                label = rng.choice(present)
            dets.append({"label": label, "score": score(), "segment": [s2, e2]})
        results[vid] = dets
    # Every class gets predictions (DETAD's sensitivity analysis needs them).
    for label in present:
        vid = annotated[0][0]
        results.setdefault(vid, []).append({"label": label, "score": score(),
                                            "segment": [1.0, 9.0]})
    return ({"version": "x", "taxonomy": [], "database": database},
            {"version": "x", "external_data": {}, "results": results})


def run_oracle(gt, pred, dataset):
    out = subprocess.run([sys.executable, ORACLE, "analysis", "--ground-truth", gt,
                          "--predictions", pred, "--subset", "validation",
                          "--dataset", dataset], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def detad_numbers(modules, gt, pred, dataset):
    add, fpa, fna, sa = modules
    bins = ANET_BINS if dataset == "activitynet" else THUMOS_BINS
    tious = np.linspace(0.5, 0.95, 10) if dataset == "activitynet" else [0.5]

    def make(limit, minimum):
        d = add.ActionDetectorDiagnosis(
            ground_truth_filename=gt, prediction_filename=pred, tiou_thresholds=tious,
            limit_factor=limit, min_tiou_thr=0.1, subset="validation", verbose=False,
            load_extra_annotations=True, characteristic_names_to_bins=bins, normalize_ap=True,
            minimum_normalized_precision_threshold_for_detection=minimum)
        d.evaluate()
        return d

    fp = make(10, 0.0)
    fp.diagnose()
    _, _, shares = fpa.split_predictions_by_score_ranges(fp, fp.limit_factor)
    names = ["True Positive", "Double Detection Err", "Wrong Label Err", "Localization Err",
             "Confusion Err", "Background Err"]
    out = {
        "mAP_N": list(fp.mAP),
        "average_mAP_N": fp.average_mAP,
        "breakdown": [fp.fp_error_types_precentage_df["avg"][k] for k in names],
        "profile": [[shares[g]["avg"][k] for k in names] for g in range(10)],
        "gain": [fp.average_mAP_gain[k] for k in names[1:]],
        "instances": len(fp.ground_truth),
    }
    fn = make(None, 0.05)
    out["false_negative"] = {}
    for name in ["coverage", "length", "num-instances"]:
        dist = fna.fn_distribution_by_characteristic(fn, name)["avg"]["unmatched"]
        out["false_negative"][name] = {str(k): float(v) for k, v in dist.items()}
    se = make(None, 0.0)
    out["sensitivity_base"] = se.average_mAP
    out["sensitivity"] = {}
    for name in ["coverage", "length", "num-instances"]:
        values = sa.compute_average_mAP_N_for_characteristic(se, name)
        out["sensitivity"][name] = {str(k): float(v) for k, v in values.items()}
    return out


def compare(seed, dataset, ours, theirs, worst):
    def diff(key, a, b):
        if a is None or b is None or (isinstance(b, float) and math.isnan(b)):
            if not (a is None and (b is None or math.isnan(b))):
                raise SystemExit("seed %d %s: %s: oracle %r, DETAD %r" % (seed, dataset, key, a, b))
            return
        worst[key] = max(worst.get(key, 0.0), abs(a - b))

    fp = ours["false_positive"]
    if ours["instances"] != theirs["instances"]:
        raise SystemExit("instance counts differ")
    for a, b in zip(fp["mAP_N"], theirs["mAP_N"]):
        diff("mAP_N", a, b)
    diff("average-mAP_N", fp["average_mAP_N"], theirs["average_mAP_N"])
    keys = ["true_positive", "double_detection", "wrong_label", "localization", "confusion",
            "background"]
    for k, b in zip(keys, theirs["breakdown"]):
        diff("error breakdown", fp["breakdown"][k], b)
    for g, row in enumerate(theirs["profile"]):
        for k, b in zip(keys, row):
            diff("profile 1G..10G", fp["profile"][g]["fractions"][k], b)
    for k, b in zip(keys[1:], theirs["gain"]):
        diff("average-mAP_N gain", fp["average_mAP_N_gain"][k], b)
    for name, key in [("coverage", "coverage"), ("length", "length"),
                      ("num-instances", "num_instances")]:
        ours_fn = {r["bucket"]: r["rate"] for r in ours["false_negative"][key]}
        for bucket, b in theirs["false_negative"][name].items():
            diff("false-negative rate", ours_fn[bucket], b)
        if set(theirs["false_negative"][name]) != {b for b, r in ours_fn.items() if r is not None}:
            raise SystemExit("seed %d: false-negative buckets differ" % seed)
        ours_se = {r["bucket"]: r["average_mAP_N"] for r in ours["sensitivity"][key]}
        for bucket, b in theirs["sensitivity"][name].items():
            diff("sensitivity average-mAP_N", ours_se[bucket], b)
    diff("sensitivity average-mAP_N", ours["sensitivity"]["average_mAP_N"],
         theirs["sensitivity_base"])


def check_thumos_characteristics(data_dir):
    """Oracle characteristics from a plain ground truth against DETAD's THUMOS14 files."""
    report = []
    for name, subset in [("thumos14_test_extra_characteristics.json", "testing"),
                         ("thumos14_val_extra_characteristics.json", "validation")]:
        detad = json.load(open(os.path.join(data_dir, name)))["database"]
        plain = {}
        for vid, v in detad.items():
            a = v["annotations"][0]
            duration = round(a["length"] / a["coverage"], 3)
            plain[vid] = {"subset": subset, "duration": duration,
                          "annotations": [{"segment": x["segment"], "label": x["label"]}
                                          for x in v["annotations"]]}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"database": plain}, f)
        out = subprocess.run([sys.executable, ORACLE, "characteristics", "--ground-truth",
                              f.name, "--subset", subset, "--dataset", "thumos14"],
                             check=True, capture_output=True, text=True)
        os.unlink(f.name)
        ours = json.loads(out.stdout)
        theirs = [a for v in detad.values() for a in v["annotations"]]
        worst = {"length": 0.0, "coverage": 0.0}
        bucket_mismatch = {"coverage": 0, "length": 0, "num_instances": 0}
        count_mismatch = 0
        for o, t in zip(ours, theirs):
            worst["length"] = max(worst["length"], abs(o["length"] - t["length"]))
            worst["coverage"] = max(worst["coverage"], abs(o["coverage"] - t["coverage"]))
            n = t.get("num-instances", t.get("num_instances"))
            count_mismatch += o["num_instances"] != n
            for key, value in [("coverage", t["coverage"]), ("length", t["length"]),
                               ("num_instances", n)]:
                edges = THUMOS_BINS[key.replace("_", "-")][0]
                expected = SIZES5[cut(value, edges)]
                bucket_mismatch[key] += o["buckets"][key] != expected
        report.append("%-42s %4d instances  max|length| %.1e  max|coverage| %.1e  "
                      "num-instances differ %d  bucket differences %s" % (
                          name, len(ours), worst["length"], worst["coverage"], count_mismatch,
                          bucket_mismatch))
        if len(ours) != len(theirs) or count_mismatch or any(bucket_mismatch.values()):
            raise SystemExit("THUMOS14 characteristics differ: " + report[-1])
    return report


def cut(value, edges):
    import pandas as pd
    return int(pd.cut([value], bins=edges, labels=False, include_lowest=True)[0])


def main(detad_dir):
    modules = import_detad(os.path.join(detad_dir, "src"))
    worst = {}
    cases = 0
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in ["activitynet", "thumos14"]:
            for seed in range(8):
                gt, pred = random_case(seed, dataset)
                gt_path = os.path.join(tmp, "gt.json")
                pred_path = os.path.join(tmp, "pred.json")
                json.dump(gt, open(gt_path, "w"))
                json.dump(pred, open(pred_path, "w"))
                ours = run_oracle(gt_path, pred_path, dataset)
                theirs = detad_numbers(modules, gt_path, pred_path, dataset)
                compare(seed, dataset, ours, theirs, worst)
                cases += 1
    print("# %d random cases (8 ActivityNet-style at tIoU 0.5:0.95:10, 8 THUMOS14-style at 0.5)"
          % cases)
    for key, value in worst.items():
        print("%-28s max |oracle - DETAD| %.3e" % (key, value))
    for line in check_thumos_characteristics(os.path.join(detad_dir, "data")):
        print(line)
    bad = {k: v for k, v in worst.items() if v > 1e-12}
    print("CONFIRMED" if not bad else "DIFFERENT: %s" % bad)


if __name__ == "__main__":
    main(sys.argv[1])
