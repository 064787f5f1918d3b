#!/usr/bin/env python3
"""Pure-Python (standard library only) reference oracle for ActivityNet-style evaluation.

What it is
    An independent, slow but transparent reimplementation of the two official ActivityNet
    evaluation algorithms (Evaluation/eval_detection.py and Evaluation/eval_proposal.py of
    github.com/activitynet/ActivityNet), written from scratch for lofi. It exists so that the
    Rust evaluator (`lofi eval`) can be checked against a second oracle in CI, where only
    CPython 3.11 is available (no numpy, no pandas).

    detection  -> per-class AP at each tIoU threshold, mAP per threshold, average mAP
    proposals  -> average recall vs. average number of proposals (AR@AN), AR@1/5/10/100, AUC

    Floating-point operations are done in the same order as the official numpy code, including
    numpy's pairwise summation for np.sum / np.mean over contiguous axes and for np.trapz, so
    results agree with the official tool to ~1e-15 on tie-free inputs.

How it differs from the official tool (deliberately)
    * Tie orders are defined (numpy's argsort order for ties is not):
        - predictions/proposals are sorted by descending score with ties kept in file order
          (videos in JSON-object order, then list order): a stable sort on -score;
        - when one prediction is matched against ground truth, candidates are visited by
          descending tIoU, ties in ground-truth file order.
      (Note: for short arrays numpy 1.x argsort is an insertion sort, so the official
      `argsort()[::-1]` actually visits ties in *reverse* file order there.)
    * A predicted label that is not a ground-truth label of the subset is reported as an error
      (exit status 2) instead of a Python KeyError traceback.
    * No blocked-video download; `--blocked-videos FILE` (a JSON list of ids) may be given to
      drop those videos from ground truth and predictions exactly as the official tool does.
    * Only "database" (ground truth) and "results" (predictions) are required keys; the official
      tool also insists on "taxonomy"/"version" and "version"/"external_data".
    * Empty proposal input (or no kept proposal for any ground-truth video) is an error (exit 2)
      instead of a ZeroDivisionError / silent inf.

Official behaviours it mirrors on purpose (checked against the official code)
    * Every GT annotation counts, duplicates included; predictions for videos of another
      subset or unknown videos are false positives (detection). Classes without predictions
      have AP 0 and count in the mean.
    * Proposals: n_videos counts only subset videos with >= 1 annotation; the keep ratio uses
      every proposal in the file (also other subsets / unknown videos); a GT video without
      proposals contributes one all-zero tIoU column.
    * tIoU 0/0 (two zero-length segments) is NaN; in detection a NaN candidate is visited first
      and `nan < thr` is false, so it is matched as a true positive; in proposals `nan >= thr`
      is false, so it never recalls.

Usage
    python3 anet_reference.py detection --ground-truth GT.json --predictions PRED.json \
        [--subset validation] [--tiou 0.5:0.95:10]
    python3 anet_reference.py proposals --ground-truth GT.json --proposals P.json \
        [--subset validation] [--max-avg-proposals 100] [--tiou 0.5:0.95:10]
"""

import argparse
import json
import math
import sys


class EvalError(Exception):
    pass


# ----------------------------------------------------------------------------- numerics

def np_sum(values):
    """Sum a list of floats exactly like numpy's pairwise summation (np.add.reduce on a
    contiguous float64 array): blocks of < 8 summed left to right, blocks of <= 128 with eight
    interleaved accumulators, larger blocks split at a multiple of 8 near the middle."""
    return _pairwise(values, 0, len(values))


def _pairwise(a, lo, n):
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    if n <= 128:
        r0, r1, r2, r3, r4, r5, r6, r7 = a[lo:lo + 8]
        i = 8
        stop = n - (n % 8)
        while i < stop:
            b = lo + i
            r0 += a[b]
            r1 += a[b + 1]
            r2 += a[b + 2]
            r3 += a[b + 3]
            r4 += a[b + 4]
            r5 += a[b + 5]
            r6 += a[b + 6]
            r7 += a[b + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[lo + i]
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise(a, lo, n2) + _pairwise(a, lo + n2, n - n2)


def np_mean(values):
    return np_sum(values) / len(values)


def linspace(start, stop, num):
    """numpy.linspace(start, stop, num) bit for bit (endpoint=True)."""
    if num < 1:
        raise EvalError("--tiou needs at least one threshold")
    if num == 1:
        return [float(start)]
    div = num - 1
    delta = stop - start
    step = delta / div
    if step == 0:
        vals = [(float(i) / div) * delta + start for i in range(num)]
    else:
        vals = [float(i) * step + start for i in range(num)]
    vals[-1] = float(stop)
    return vals


def parse_tiou(text):
    parts = text.split(":")
    if len(parts) != 3:
        raise EvalError("--tiou must be START:STOP:N, got %r" % text)
    return linspace(float(parts[0]), float(parts[1]), int(parts[2]))


def tiou(ps, pe, gs, ge):
    """Official segment_iou for one (prediction, ground truth) pair."""
    inter = min(pe, ge) - max(ps, gs)
    if inter < 0.0:
        inter = 0.0
    union = (ge - gs) + (pe - ps) - inter
    if union == 0.0:
        # numpy semantics (the official code divides arrays): 0/0 = nan, x/0 = +-inf
        if inter == 0.0:
            return math.nan
        return math.copysign(math.inf, union)
    return inter / union


def interpolated_ap(prec, rec):
    """VOC-2011 interpolated AP, same operation order as the official interpolated_prec_rec."""
    mprec = [0.0] + list(prec) + [0.0]
    mrec = [0.0] + list(rec) + [1.0]
    for i in range(len(mprec) - 2, -1, -1):
        if mprec[i + 1] > mprec[i]:
            mprec[i] = mprec[i + 1]
    terms = [(mrec[i] - mrec[i - 1]) * mprec[i]
             for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]]
    return np_sum(terms)


# ----------------------------------------------------------------------------- input

def load_json(path):
    try:
        with open(path, "r") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise EvalError("cannot read %s: %s" % (path, e))


def load_blocked(path):
    if not path:
        return set()
    data = load_json(path)
    if not isinstance(data, list):
        raise EvalError("--blocked-videos must be a JSON list of video ids")
    return set(data)


def load_ground_truth(path, subset, blocked):
    """Returns (classes, gt) where classes are labels in first-appearance order and gt is a list
    of (video_id, class_index, start, end) in file order."""
    data = load_json(path)
    if not isinstance(data, dict) or "database" not in data:
        raise EvalError("ground truth %s has no 'database' key" % path)
    class_index = {}
    classes = []
    gt = []
    for vid, v in data["database"].items():
        if v.get("subset") != subset:
            continue
        if vid in blocked:
            continue
        for ann in v.get("annotations", []):
            label = ann["label"]
            if label not in class_index:
                class_index[label] = len(classes)
                classes.append(label)
            gt.append((vid, class_index[label], float(ann["segment"][0]),
                       float(ann["segment"][1])))
    return classes, class_index, gt


def load_results(path, blocked):
    data = load_json(path)
    if not isinstance(data, dict) or "results" not in data:
        raise EvalError("predictions %s have no 'results' key" % path)
    out = []
    for vid, lst in data["results"].items():
        if vid in blocked:
            continue
        for r in lst:
            out.append((vid, r))
    return out


# ----------------------------------------------------------------------------- detection

def average_precision_detection(gt_segments, preds, thresholds):
    """gt_segments: list of (video, start, end) of one class, file order.
    preds: list of (video, start, end, score) of that class, file order.
    Returns a list of AP per threshold."""
    nthr = len(thresholds)
    if not preds:
        return [0.0] * nthr
    npos = float(len(gt_segments))
    by_video = {}
    for gi, (vid, s, e) in enumerate(gt_segments):
        by_video.setdefault(vid, []).append((gi, s, e))
    order = sorted(range(len(preds)), key=lambda i: -preds[i][3])  # stable: ties in file order
    lock = [[False] * len(gt_segments) for _ in range(nthr)]
    n = len(order)
    tp = [[0.0] * n for _ in range(nthr)]
    fp = [[0.0] * n for _ in range(nthr)]
    for rank, pi in enumerate(order):
        vid, ps, pe, _ = preds[pi]
        cands = by_video.get(vid)
        if cands is None:
            for t in range(nthr):
                fp[t][rank] = 1.0
            continue
        ious = [(tiou(ps, pe, gs, ge), gi) for gi, gs, ge in cands]
        # descending tIoU, ties in ground-truth file order (stable sort). A NaN tIoU (both
        # segments zero-length, disjoint) sorts first, as after numpy's argsort()[::-1], and
        # since `nan < thr` is false it is matched like a perfect overlap (official quirk).
        ious.sort(key=lambda x: (0, 0.0) if x[0] != x[0] else (1, -x[0]))
        for t, thr in enumerate(thresholds):
            matched = False
            for iou, gi in ious:
                if iou < thr:
                    break
                if lock[t][gi]:
                    continue
                lock[t][gi] = True
                matched = True
                break
            if matched:
                tp[t][rank] = 1.0
            else:
                fp[t][rank] = 1.0
    ap = []
    for t in range(nthr):
        ctp = 0.0
        cfp = 0.0
        prec = []
        rec = []
        for k in range(n):
            ctp += tp[t][k]
            cfp += fp[t][k]
            rec.append(ctp / npos)
            prec.append(ctp / (ctp + cfp))
        ap.append(interpolated_ap(prec, rec))
    return ap


def run_detection(args):
    thresholds = parse_tiou(args.tiou)
    blocked = load_blocked(args.blocked_videos)
    classes, class_index, gt = load_ground_truth(args.ground_truth, args.subset, blocked)
    if not classes:
        raise EvalError("no ground truth in subset %r" % args.subset)
    gt_by_class = [[] for _ in classes]
    for vid, c, s, e in gt:
        gt_by_class[c].append((vid, s, e))
    pred_by_class = [[] for _ in classes]
    for vid, r in load_results(args.predictions, blocked):
        label = r["label"]
        c = class_index.get(label)
        if c is None:
            raise EvalError("predicted label %r (video %r) is not a ground-truth label of "
                            "subset %r" % (label, vid, args.subset))
        pred_by_class[c].append((vid, float(r["segment"][0]), float(r["segment"][1]),
                                 float(r["score"])))
    per_class = [average_precision_detection(gt_by_class[c], pred_by_class[c], thresholds)
                 for c in range(len(classes))]
    mAP = [np_mean([per_class[c][t] for c in range(len(classes))])
           for t in range(len(thresholds))]
    return {
        "tiou_thresholds": thresholds,
        "mAP": mAP,
        "average_mAP": np_mean(mAP),
        "per_class_AP": {classes[c]: per_class[c] for c in range(len(classes))},
    }


# ----------------------------------------------------------------------------- proposals

def run_proposals(args):
    thresholds = parse_tiou(args.tiou)
    blocked = load_blocked(args.blocked_videos)
    _, _, gt = load_ground_truth(args.ground_truth, args.subset, blocked)
    # Videos = distinct ground-truth videos with at least one annotation, first-appearance order.
    videos = []
    gt_by_video = {}
    for vid, _, s, e in gt:
        if vid not in gt_by_video:
            gt_by_video[vid] = []
            videos.append(vid)
        gt_by_video[vid].append((s, e))
    if not videos:
        raise EvalError("no ground truth in subset %r" % args.subset)
    props_by_video = {}
    total_props = 0
    for vid, r in load_results(args.proposals, blocked):
        total_props += 1  # every proposal in the file counts, also other/unknown videos
        props_by_video.setdefault(vid, []).append(
            (float(r["segment"][0]), float(r["segment"][1]), float(r["score"])))
    if total_props == 0:
        raise EvalError("proposal file has no proposals")
    an_max = args.max_avg_proposals
    n_videos = len(videos)
    ratio = an_max * float(n_videos) / total_props

    # Per video: number of columns (kept proposals, or 1 all-zero column when the video has
    # none) and, per GT segment and threshold, the first column index reaching the threshold.
    per_video = []  # (n_cols, [[first_hit per threshold] per gt])
    total_kept = 0
    for vid in videos:
        gts = gt_by_video[vid]
        props = props_by_video.get(vid)
        if not props:
            rows = [[0.0] for _ in gts]
            n_cols = 1
        else:
            props = sorted(props, key=lambda p: -p[2])  # stable: ties in file order
            n_keep = min(int(len(props) * ratio), len(props))
            total_kept += n_keep
            props = props[:n_keep]
            rows = [[tiou(ps, pe, gs, ge) for ps, pe, _ in props] for gs, ge in gts]
            n_cols = n_keep
        hits = []
        for row in rows:
            h = []
            for thr in thresholds:
                first = None
                for j, v in enumerate(row):
                    if v >= thr:
                        first = j
                        break
                h.append(first)
            hits.append(h)
        per_video.append((n_cols, hits))
    if total_kept == 0:
        raise EvalError("no proposal kept for any ground-truth video")

    scale = an_max * float(n_videos) / total_kept
    pcn = [(i / 100.0) * scale for i in range(1, 101)]
    n_pos = float(len(gt))
    recall = []  # [threshold][j]
    for t in range(len(thresholds)):
        matches = [0.0] * 100
        for n_cols, hits in per_video:
            ks = [min(int(n_cols * p), n_cols) for p in pcn]
            for h in hits:
                first = h[t]
                if first is None:
                    continue
                for j in range(100):
                    if first < ks[j]:
                        matches[j] += 1.0
        recall.append([m / n_pos for m in matches])
    # recall.mean(axis=0): sequential row accumulation, then division
    avg_recall = []
    for j in range(100):
        acc = recall[0][j]
        for t in range(1, len(thresholds)):
            acc += recall[t][j]
        avg_recall.append(acc / len(thresholds))
    per_vid = float(total_kept) / n_videos
    avg_props = [p * per_vid for p in pcn]
    trap = np_sum([(avg_props[i + 1] - avg_props[i]) * (avg_recall[i + 1] + avg_recall[i]) / 2.0
                   for i in range(99)])
    auc = 100.0 * trap / avg_props[-1]

    def ar_at(k):
        j = int(math.ceil(k * 100.0 / an_max)) - 1
        return avg_recall[min(max(j, 0), 99)]

    return {
        "AR@1": ar_at(1),
        "AR@5": ar_at(5),
        "AR@10": ar_at(10),
        "AR@100": ar_at(100),
        "AUC": auc,
        "average_recall": avg_recall,
        "avg_proposals": avg_props,
    }


# ----------------------------------------------------------------------------- CLI

def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="task", required=True)
    d = sub.add_parser("detection", help="detection mAP")
    d.add_argument("--ground-truth", required=True)
    d.add_argument("--predictions", required=True)
    q = sub.add_parser("proposals", help="proposal AR@AN / AUC")
    q.add_argument("--ground-truth", required=True)
    q.add_argument("--proposals", required=True)
    q.add_argument("--max-avg-proposals", type=int, default=100)
    for s in (d, q):
        s.add_argument("--subset", default="validation")
        s.add_argument("--tiou", default="0.5:0.95:10")
        s.add_argument("--blocked-videos", default=None,
                       help="optional JSON list of video ids to drop (official behaviour)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        out = run_detection(args) if args.task == "detection" else run_proposals(args)
    except EvalError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
