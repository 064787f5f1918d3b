#!/usr/bin/env python3
"""Pure-Python (standard library only) oracle for the DETAD error analysis.

What it is
    A slow, literal reimplementation, written for lofi from reading DETAD (Alwassel et al., ECCV
    2018; github.com/HumamAlwassel/DETAD, src/action_detector_diagnosis.py and the three
    *_analysis.py scripts), of the numbers behind DETAD's three figures, so that lofi's
    `--analysis` (lofi-eval's `analysis` module) can be checked against it in CI, where only
    CPython 3 is available. `test-tools/detad/confirm_official.py` checked this file once
    against DETAD's own code (see `test-tools/detad/confirm_official.out`).

    The three analyses run DETAD's ActionDetectorDiagnosis in three configurations; all use the
    normalized precision  P_N = R * Nbar / (R * Nbar + FP)  with Nbar the number of ground-truth
    instances per class (after the removals below), so that AP_N does not depend on how many
    instances a class has.

    false positives   top (limit_factor x N_j) predictions of each class j; every prediction that
                      is not a true positive at a threshold is typed by the ground truth of any
                      class in its video with the highest tIoU (first in file order on ties):
                      tIoU >= threshold: double detection (same label) / wrong label;
                      tIoU >= min_tiou: localization (same label) / confusion; else background.
                      The profile splits each class's ranked predictions into slices of N_j
                      (1G, 2G, ...); the gain is the average-mAP_N with one error type's
                      predictions removed, minus the average-mAP_N.
    false negatives   all predictions; a true positive whose P_N at its rank is <= 0.05 is
                      discarded (its instance counts as missed). Per characteristic bucket, the
                      share of instances not matched, averaged over the thresholds.
    sensitivity       all predictions; per bucket and class, the predictions that at every
                      threshold are unmatched or matched to an instance of the bucket, AP_N
                      against the bucket's instances of the class (Nbar stays global), averaged
                      over thresholds, then over the classes with instances in the bucket.

    Characteristics come from a plain ground truth: length = end - start, coverage = length /
    video duration, num-instances = annotations in the video. As DETAD does, instances with
    coverage > 1 and instances with end <= start are left out of every analysis (classes stay).
    Buckets are pandas.cut(right=True, include_lowest=True) with DETAD's edges per dataset.

How it differs from DETAD (deliberately)
    * Ties: predictions are ranked by descending score with ties in file order (a stable sort);
      DETAD leaves ties to numpy/pandas' unstable sorts.
    * A class with instances in a bucket but no predictions at all gets AP_N 0 in the
      sensitivity analysis (DETAD raises KeyError); empty buckets give null (DETAD: NaN).
    * Without a duration for every annotated video, coverage is not computed (and nothing is
      left out for it); DETAD reads coverage from its extra-annotation files.
    * A class whose instances were all left out gets AP_N 0 (DETAD divides by zero).
    * Every prediction in a video without ground truth (another subset, unknown) is a background
      error. DETAD's analyze_fp_error_types types only the first such prediction of a video so;
      the later ones are typed against the previously visited video's ground truth, or it fails
      with UnboundLocalError when that video comes first.

Usage
    python3 detad_reference.py analysis --ground-truth GT.json --predictions PRED.json \
        [--subset validation] [--tiou 0.5:0.95:10] [--dataset activitynet|thumos14]
    python3 detad_reference.py characteristics --ground-truth GT.json [--subset test] \
        [--dataset thumos14]
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from anet_reference import (  # noqa: E402
    EvalError, interpolated_ap, linspace, load_json, np_mean, np_sum, parse_tiou, tiou)

INF = math.inf
ERROR_TYPES = ["true_positive", "double_detection", "wrong_label", "localization", "confusion",
               "background"]
SIZES5 = ["XS", "S", "M", "L", "XL"]
BINS = {
    "activitynet": {
        "coverage": (linspace(0.0, 1.0, 6), SIZES5),
        "length": ([0.0, 30.0, 60.0, 120.0, 180.0, INF], SIZES5),
        "num_instances": ([-1.0, 1.0, 4.0, 8.0, INF], SIZES5[:4]),
    },
    "thumos14": {
        "coverage": ([0.0, 0.02, 0.04, 0.06, 0.08, 1.0], SIZES5),
        "length": ([0.0, 3.0, 6.0, 12.0, 18.0, INF], SIZES5),
        "num_instances": ([-1.0, 1.0, 40.0, 80.0, INF], SIZES5[:4]),
    },
}
CHARACTERISTICS = ["coverage", "length", "num_instances"]


def cut(value, edges):
    """pandas.cut(bins=edges, right=True, include_lowest=True): the bucket index or None."""
    if value is None:
        return None
    if value == edges[0]:
        return 0
    for i in range(len(edges) - 1):
        if edges[i] < value <= edges[i + 1]:
            return i
    return None


# ----------------------------------------------------------------------------- input

def load(gt_path, pred_path, subset, dataset):
    data = load_json(gt_path)
    if not isinstance(data, dict) or "database" not in data:
        raise EvalError("ground truth %s has no 'database' key" % gt_path)
    class_index, classes, instances = {}, [], []
    videos = [(vid, v) for vid, v in data["database"].items() if v.get("subset") == subset]
    have_durations = all(v.get("duration") for _, v in videos if v.get("annotations"))
    for vid, v in videos:
        anns = v.get("annotations", [])
        for ann in anns:
            label = ann["label"]
            if label not in class_index:
                class_index[label] = len(classes)
                classes.append(label)
            s, e = float(ann["segment"][0]), float(ann["segment"][1])
            length = e - s
            chars = {
                "coverage": length / float(v["duration"]) if have_durations else None,
                "length": length,
                "num_instances": float(len(anns)),
            }
            instances.append({"id": len(instances), "video": vid, "label": class_index[label],
                              "start": s, "end": e, "chars": chars})
    if not instances:
        raise EvalError("no ground truth in subset %r" % subset)
    bins = BINS[dataset]
    for inst in instances:
        inst["buckets"] = {name: cut(inst["chars"][name], bins[name][0])
                           for name in CHARACTERISTICS}
    predictions = []
    if pred_path is not None:
        results = load_json(pred_path)
        for vid, lst in results["results"].items():
            for r in lst:
                c = class_index.get(r["label"])
                if c is None:
                    raise EvalError("predicted label %r is not a ground-truth label" % r["label"])
                predictions.append({"id": len(predictions), "video": vid, "label": c,
                                    "start": float(r["segment"][0]),
                                    "end": float(r["segment"][1]), "score": float(r["score"])})
    return classes, instances, have_durations, predictions


# ----------------------------------------------------------------------------- matching

def ranked(preds):
    return sorted(preds, key=lambda p: -p["score"])  # stable: ties in file order


def match_class(preds, gts, thresholds, nbar, min_precision):
    """DETAD's compute_average_precision_detection with normalize_ap: returns (AP_N per
    threshold, {prediction id: [gt id or None per threshold]}). `preds` ranked."""
    nthr = len(thresholds)
    matched = {p["id"]: [None] * nthr for p in preds}
    if not preds:
        return [0.0] * nthr, matched
    npos = float(len(gts))
    by_video = {}
    for g in gts:
        by_video.setdefault(g["video"], []).append(g)
    locked = [set() for _ in range(nthr)]
    for p in preds:
        cands = by_video.get(p["video"])
        if not cands:
            continue
        ious = sorted(((tiou(p["start"], p["end"], g["start"], g["end"]), g["id"]) for g in cands),
                      key=lambda x: -x[0])
        for t, thr in enumerate(thresholds):
            for iou, gid in ious:
                if iou < thr:
                    break
                if gid in locked[t]:
                    continue
                locked[t].add(gid)
                matched[p["id"]][t] = gid
                break
    ap = []
    for t in range(nthr):
        if npos == 0:
            ap.append(0.0)
            continue
        flags = [matched[p["id"]][t] is not None for p in preds]
        prec, rec = normalized_curve(flags, npos, nbar)
        discard = [i for i in range(len(preds)) if prec[i] <= min_precision]
        if discard and min_precision > 0:
            for i in discard:
                matched[preds[i]["id"]][t] = None
            flags = [matched[p["id"]][t] is not None for p in preds]
            prec, rec = normalized_curve(flags, npos, nbar)
        ap.append(interpolated_ap(prec, rec))
    return ap, matched


def normalized_curve(flags, npos, nbar):
    prec, rec = [], []
    ctp = cfp = 0.0
    for f in flags:
        if f:
            ctp += 1.0
        else:
            cfp += 1.0
        r = ctp / npos
        rec.append(r)
        prec.append(r * nbar / (r * nbar + cfp))
    return prec, rec


def ap_n(flags, npos, nbar):
    prec, rec = normalized_curve(flags, npos, nbar)
    return interpolated_ap(prec, rec)


def evaluate(classes, instances, predictions, thresholds, nbar, limit, min_precision):
    """One configuration: per class ranked (and limited) predictions, AP_N, matches."""
    per_class, matched, kept = [], {}, []
    for c in range(len(classes)):
        gts = [g for g in instances if g["label"] == c]
        preds = ranked([p for p in predictions if p["label"] == c])
        if limit is not None:
            preds = preds[:int(len(gts) * limit)]
        ap, m = match_class(preds, gts, thresholds, nbar, min_precision)
        per_class.append(ap)
        matched.update(m)
        kept.append(preds)
    mAP = [np_mean([per_class[c][t] for c in range(len(classes))])
           for t in range(len(thresholds))]
    return per_class, mAP, np_mean(mAP), matched, kept


# ----------------------------------------------------------------------------- analyses

def error_type(p, t, thr, matched, gts_by_video, min_tiou):
    if matched[p["id"]][t] is not None:
        return 0
    gts = gts_by_video.get(p["video"])
    if not gts:
        return 5
    ious = [tiou(p["start"], p["end"], g["start"], g["end"]) for g in gts]
    top = max(ious)
    label = gts[ious.index(top)]["label"]
    if top >= thr:
        return 1 if label == p["label"] else 2
    if top >= min_tiou:
        return 3 if label == p["label"] else 4
    return 5


def fractions(counts_per_t, n):
    nthr = len(counts_per_t)
    return {name: (sum(counts_per_t[t][e] for t in range(nthr)) / nthr) / n if n else None
            for e, name in enumerate(ERROR_TYPES)}


def false_positive_analysis(classes, instances, predictions, thresholds, nbar, limit, min_tiou):
    per_class, mAP, avg, matched, kept = evaluate(classes, instances, predictions, thresholds,
                                                  nbar, limit, 0.0)
    gts_by_video = {}
    for g in instances:
        gts_by_video.setdefault(g["video"], []).append(g)
    nthr = len(thresholds)
    types = {}
    for preds in kept:
        for p in preds:
            types[p["id"]] = [error_type(p, t, thr, matched, gts_by_video, min_tiou)
                              for t, thr in enumerate(thresholds)]
    every = [p for preds in kept for p in preds]
    counts = [[0] * 6 for _ in range(nthr)]
    for p in every:
        for t in range(nthr):
            counts[t][types[p["id"]][t]] += 1
    profile = []
    for g in range(limit):
        slice_ = []
        for c, preds in enumerate(kept):
            n_j = sum(1 for i in instances if i["label"] == c)
            slice_ += preds[g * n_j:(g + 1) * n_j]
        sc = [[0] * 6 for _ in range(nthr)]
        for p in slice_:
            for t in range(nthr):
                sc[t][types[p["id"]][t]] += 1
        profile.append({"top": "%dG" % (g + 1), "predictions": len(slice_),
                        "fractions": fractions(sc, len(slice_))})
    gains = {}
    for e in range(1, 6):
        matrix = []
        for t in range(nthr):
            for c, preds in enumerate(kept):
                npos = float(sum(1 for i in instances if i["label"] == c))
                rest = [p for p in preds if types[p["id"]][t] != e]
                flags = [matched[p["id"]][t] is not None for p in rest]
                matrix.append(ap_n(flags, npos, nbar) if npos else 0.0)
        gains[ERROR_TYPES[e]] = np_mean(matrix) - avg
    return {
        "predictions": len(every),
        "mAP_N": mAP,
        "average_mAP_N": avg,
        "error_counts": [dict(zip(ERROR_TYPES, row)) for row in counts],
        "breakdown": fractions(counts, len(every)),
        "profile": profile,
        "average_mAP_N_gain": gains,
    }


def false_negative_analysis(classes, instances, predictions, thresholds, nbar, labels):
    _, _, _, matched, _ = evaluate(classes, instances, predictions, thresholds, nbar, None, 0.05)
    nthr = len(thresholds)
    out = {}
    for name in CHARACTERISTICS:
        if instances[0]["chars"][name] is None:
            continue
        rows = []
        total = sum(1 for i in instances if i["buckets"][name] is not None)
        for b, label in enumerate(labels[name]):
            members = [i for i in instances if i["buckets"][name] == b]
            if not members:
                rows.append({"bucket": label, "instances": 0, "rate": None})
                continue
            share = len(members) / total
            rate = 0.0
            for t in range(nthr):
                hit = {m[t] for m in matched.values() if m[t] is not None}
                missed = sum(1 for i in members if i["id"] not in hit)
                rate = rate + missed / (share * total)
            rows.append({"bucket": label, "instances": len(members), "rate": rate / nthr})
        out[name] = rows
    return out


def sensitivity_analysis(classes, instances, predictions, thresholds, nbar, labels):
    _, _, base, matched, kept = evaluate(classes, instances, predictions, thresholds, nbar,
                                         None, 0.0)
    nthr = len(thresholds)
    out = {"average_mAP_N": base}
    for name in CHARACTERISTICS:
        if instances[0]["chars"][name] is None:
            continue
        rows = []
        for b, label in enumerate(labels[name]):
            members = [i for i in instances if i["buckets"][name] == b]
            values, count = [], 0
            for c in range(len(classes)):
                gts = {i["id"] for i in members if i["label"] == c}
                if not gts:
                    values.append(0.0)  # np.nanmean: NaN -> 0, not counted
                    continue
                count += 1
                preds = [p for p in kept[c]
                         if all(matched[p["id"]][t] is None or matched[p["id"]][t] in gts
                                for t in range(nthr))]
                ap = [ap_n([matched[p["id"]][t] is not None for p in preds], float(len(gts)),
                           nbar) for t in range(nthr)]
                values.append(np_mean(ap))
            rows.append({"bucket": label, "instances": len(members),
                         "average_mAP_N": np_sum(values) / count if count else None})
        out[name] = rows
    return out


def run_analysis(args):
    thresholds = parse_tiou(args.tiou)
    classes, everything, have_durations, predictions = load(
        args.ground_truth, args.predictions, args.subset, args.dataset)
    zero = [i for i in everything if not i["start"] < i["end"]]
    over = [i for i in everything
            if i["start"] < i["end"] and have_durations and i["chars"]["coverage"] > 1.0]
    instances = [i for i in everything
                 if i["start"] < i["end"] and not (have_durations and i["chars"]["coverage"] > 1.0)]
    nbar = len(instances) / len(classes)
    labels = {name: BINS[args.dataset][name][1] for name in CHARACTERISTICS}
    return {
        "tiou_thresholds": thresholds,
        "instances": len(instances),
        "left_out_zero_length": len(zero),
        "left_out_coverage_above_one": len(over),
        "average_instances_per_class": nbar,
        "false_positive": false_positive_analysis(classes, instances, predictions, thresholds,
                                                  nbar, args.limit_factor, args.min_tiou),
        "false_negative": false_negative_analysis(classes, instances, predictions, thresholds,
                                                  nbar, labels),
        "sensitivity": sensitivity_analysis(classes, instances, predictions, thresholds, nbar,
                                            labels),
    }


def run_characteristics(args):
    _, instances, _, _ = load(args.ground_truth, None, args.subset, args.dataset)
    labels = BINS[args.dataset]
    return [{"video": i["video"], "segment": [i["start"], i["end"]],
             "coverage": i["chars"]["coverage"], "length": i["chars"]["length"],
             "num_instances": int(i["chars"]["num_instances"]),
             "buckets": {name: (labels[name][1][i["buckets"][name]]
                                if i["buckets"][name] is not None else None)
                         for name in CHARACTERISTICS}}
            for i in instances]


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="task", required=True)
    a = sub.add_parser("analysis", help="false-positive, false-negative, sensitivity analyses")
    a.add_argument("--predictions", required=True)
    a.add_argument("--tiou", default=None, help="default: the dataset's (DETAD's)")
    a.add_argument("--limit-factor", type=int, default=10)
    a.add_argument("--min-tiou", type=float, default=0.1)
    c = sub.add_parser("characteristics", help="per-instance characteristics and buckets")
    for s in (a, c):
        s.add_argument("--ground-truth", required=True)
        s.add_argument("--subset", default="validation")
        s.add_argument("--dataset", choices=sorted(BINS), default="activitynet")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.task == "analysis":
            if args.tiou is None:
                args.tiou = "0.5:0.95:10" if args.dataset == "activitynet" else "0.5:0.5:1"
            out = run_analysis(args)
        else:
            out = run_characteristics(args)
    except EvalError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
