#!/usr/bin/env python3
"""Vectorized numpy implementation of ActivityNet-style evaluation (the "Python numpy peer").

What it is
    A reasonably optimized numpy reimplementation of the official ActivityNet detection mAP and
    proposal AR@AN/AUC algorithms (github.com/activitynet/ActivityNet, Evaluation/), written
    from scratch for lofi. It is the fair Python baseline the `lofi eval` benchmark compares
    against, and a second check of anet_reference.py (pure-stdlib oracle); both print the same
    JSON and agree to 1e-9 (in practice bit for bit or within a few ulps).

    How it is fast: JSON is parsed with the stdlib `json` module into flat numpy arrays;
    predictions are ordered per class with one lexsort; greedy matching runs per
    (class, video) group, since ground-truth locks never cross videos, and inside a group it
    iterates over *matches* (at most #GT + 1 steps, all thresholds at once) rather than over
    predictions; predictions of a class in a video without ground truth of that class are
    false positives without any work. Proposal recall is computed from "first proposal index
    reaching the threshold" per ground-truth segment, compared against all 100 AN budgets at
    once.

How it differs from the official tool (same as anet_reference.py)
    * Defined tie orders: predictions/proposals by descending score, ties in file order (video
      ids in JSON-object order, then list order; stable sort on -score); ground-truth
      candidates of one prediction by descending tIoU, ties in ground-truth file order.
    * A predicted label absent from the subset's ground truth is an error (exit status 2).
    * No blocked-video download (optional `--blocked-videos FILE`, JSON list of ids).
    * Only "database" / "results" keys are required.
    * Empty proposal input / no kept proposal is an error (exit 2).

Usage: identical to anet_reference.py
    python3 anet_numpy.py detection --ground-truth GT.json --predictions PRED.json \
        [--subset validation] [--tiou 0.5:0.95:10]
    python3 anet_numpy.py proposals --ground-truth GT.json --proposals P.json \
        [--subset validation] [--max-avg-proposals 100] [--tiou 0.5:0.95:10]
"""

import argparse
import json
import math
import sys

import numpy as np


class EvalError(Exception):
    pass


def parse_tiou(text):
    parts = text.split(":")
    if len(parts) != 3:
        raise EvalError("--tiou must be START:STOP:N, got %r" % text)
    n = int(parts[2])
    if n < 1:
        raise EvalError("--tiou needs at least one threshold")
    return np.linspace(float(parts[0]), float(parts[1]), n)


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
    """Returns classes (first-appearance order), class->index, video->index (videos with at
    least one annotation, first-appearance order) and GT arrays (video, class, start, end) in
    file order."""
    data = load_json(path)
    if not isinstance(data, dict) or "database" not in data:
        raise EvalError("ground truth %s has no 'database' key" % path)
    class_index = {}
    video_index = {}
    gv, gc, gs, ge = [], [], [], []
    for vid, v in data["database"].items():
        if v.get("subset") != subset or vid in blocked:
            continue
        anns = v.get("annotations", [])
        if not anns:
            continue
        vi = video_index.setdefault(vid, len(video_index))
        for ann in anns:
            c = class_index.setdefault(ann["label"], len(class_index))
            seg = ann["segment"]
            gv.append(vi)
            gc.append(c)
            gs.append(float(seg[0]))
            ge.append(float(seg[1]))
    classes = list(class_index)
    return (classes, class_index, video_index,
            np.array(gv, dtype=np.int64), np.array(gc, dtype=np.int64),
            np.array(gs, dtype=np.float64), np.array(ge, dtype=np.float64))


def load_results(path, blocked, video_index, class_index=None):
    """Flat arrays of predictions in file order. Videos unknown to the GT get fresh indices
    (>= number of GT videos). With class_index, labels are mapped (unknown label = error)."""
    data = load_json(path)
    if not isinstance(data, dict) or "results" not in data:
        raise EvalError("predictions %s have no 'results' key" % path)
    vidx = dict(video_index)
    pv, pc, ps, pe, psc = [], [], [], [], []
    total = 0
    for vid, lst in data["results"].items():
        if vid in blocked:
            continue
        total += len(lst)
        if not lst:
            continue
        vi = vidx.setdefault(vid, len(vidx))
        pv.extend([vi] * len(lst))
        if class_index is not None:
            try:
                pc.extend([class_index[r["label"]] for r in lst])
            except KeyError as e:
                raise EvalError("predicted label %r (video %r) is not a ground-truth label "
                                "of the subset" % (e.args[0], vid))
        segs = [r["segment"] for r in lst]
        ps.extend([sg[0] for sg in segs])
        pe.extend([sg[1] for sg in segs])
        psc.extend([r["score"] for r in lst])
    return (total, np.array(pv, dtype=np.int64),
            np.array(pc, dtype=np.int64) if class_index is not None else None,
            np.array(ps, dtype=np.float64), np.array(pe, dtype=np.float64),
            np.array(psc, dtype=np.float64))


def segment_tiou(ps, pe, gs, ge):
    """tIoU matrix, predictions along axis 0, GT along axis 1 (official operation order)."""
    inter = np.minimum(pe[:, None], ge[None, :]) - np.maximum(ps[:, None], gs[None, :])
    inter = inter.clip(0)
    union = (ge - gs)[None, :] + (pe - ps)[:, None] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def interpolated_ap(prec, rec):
    mprec = np.concatenate(([0.0], prec, [0.0]))
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


# ----------------------------------------------------------------------------- detection

def match_group(tiou, thr):
    """Greedy matching of one (class, video) group. tiou: (P, G), rows in descending score
    order. Returns tp flags (T, P) as bool. Each step finds, for every threshold, the next
    prediction that has an unlocked GT with tIoU >= thr; it takes the best such GT (highest
    tIoU, ties lowest GT index, i.e. file order). At most G steps per threshold."""
    T = thr.shape[0]
    P, G = tiou.shape
    # `not (tiou < thr)`: a NaN tIoU (zero-length segments) is eligible, as in the official
    # loop, and ranks above every number (official argsort()[::-1] puts NaN first).
    elig = ~(tiou[None, :, :] < thr[:, None, None])         # (T, P, G)
    tp = np.zeros((T, P), dtype=bool)
    if not elig.any():
        return tp
    unlocked = np.ones((T, G), dtype=bool)
    pos = np.zeros(T, dtype=np.int64)                        # next prediction to consider
    rows = np.arange(P)
    tix = np.arange(T)
    while True:
        avail = elig & unlocked[:, None, :]
        rowok = avail.any(axis=2) & (rows[None, :] >= pos[:, None])
        has = rowok.any(axis=1)
        if not has.any():
            return tp
        t = tix[has]
        p = rowok[t].argmax(axis=1)
        tp_rows = tiou[p]
        cand = np.where(avail[t, p], np.where(np.isnan(tp_rows), np.inf, tp_rows), -np.inf)
        g = cand.argmax(axis=1)
        tp[t, p] = True
        unlocked[t, g] = False
        pos[t] = p + 1


def run_detection(args):
    thr = parse_tiou(args.tiou)
    T = thr.shape[0]
    blocked = load_blocked(args.blocked_videos)
    classes, class_index, video_index, gv, gc, gs, ge = load_ground_truth(
        args.ground_truth, args.subset, blocked)
    C = len(classes)
    if C == 0:
        raise EvalError("no ground truth in subset %r" % args.subset)
    _, pv, pc, ps, pe, psc = load_results(args.predictions, blocked, video_index, class_index)
    N = pv.shape[0]
    nvid = int(max(pv.max() + 1 if N else 0, len(video_index)))

    # Per class: descending score, ties file order (lexsort is stable).
    order = np.lexsort((-psc, pc))
    pc_s = pc[order]
    cls_start = np.searchsorted(pc_s, np.arange(C + 1))
    # Position of each sorted prediction inside its class list.
    rank = np.arange(N) - cls_start[pc_s]
    tp_all = np.zeros((T, N), dtype=bool)                   # in class-sorted order

    # GT grouped by (class, video), file order within group.
    gkey = gc * nvid + gv
    gorder = np.argsort(gkey, kind="stable")
    gkey_s = gkey[gorder]
    ukeys, gfirst, gcount = np.unique(gkey_s, return_index=True, return_counts=True)
    gs_s, ge_s = gs[gorder], ge[gorder]

    # Predictions grouped by (class, video), score order within group.
    pkey = pc_s * nvid + pv[order]
    porder = np.argsort(pkey, kind="stable")                # indices into class-sorted arrays
    pkey_s = pkey[porder]
    pukeys, pfirst, pcount = np.unique(pkey_s, return_index=True, return_counts=True)
    # Only groups that also have GT need matching.
    gi = np.searchsorted(ukeys, pukeys)
    gi_clip = np.minimum(gi, len(ukeys) - 1)
    has_gt = ukeys[gi_clip] == pukeys
    ps_o, pe_o = ps[order], pe[order]
    for k in np.nonzero(has_gt)[0]:
        a = pfirst[k]
        sel = porder[a:a + pcount[k]]
        j = gi_clip[k]
        b = gfirst[j]
        c = gcount[j]
        tiou = segment_tiou(ps_o[sel], pe_o[sel], gs_s[b:b + c], ge_s[b:b + c])
        tp = match_group(tiou, thr)
        if tp.any():
            tp_all[:, sel] = tp

    npos = np.bincount(gc, minlength=C).astype(np.float64)
    ap = np.zeros((T, C))
    for c in range(C):
        a, b = cls_start[c], cls_start[c + 1]
        if a == b:
            continue
        tp = tp_all[:, a:b]
        tp_c = np.cumsum(tp, axis=1, dtype=np.float64)
        fp_c = np.cumsum(~tp, axis=1, dtype=np.float64)
        rec = tp_c / npos[c]
        prec = tp_c / (tp_c + fp_c)
        for t in range(T):
            ap[t, c] = interpolated_ap(prec[t], rec[t])
    mAP = ap.mean(axis=1)
    return {
        "tiou_thresholds": thr.tolist(),
        "mAP": mAP.tolist(),
        "average_mAP": float(mAP.mean()),
        "per_class_AP": {classes[c]: ap[:, c].tolist() for c in range(C)},
    }


# ----------------------------------------------------------------------------- proposals

def run_proposals(args):
    thr = parse_tiou(args.tiou)
    T = thr.shape[0]
    blocked = load_blocked(args.blocked_videos)
    _, _, video_index, gv, gc, gs, ge = load_ground_truth(args.ground_truth, args.subset,
                                                          blocked)
    V = len(video_index)
    if V == 0:
        raise EvalError("no ground truth in subset %r" % args.subset)
    total, pv, _, ps, pe, psc = load_results(args.proposals, blocked, video_index)
    if total == 0:
        raise EvalError("proposal file has no proposals")
    an_max = args.max_avg_proposals
    ratio = an_max * float(V) / total

    # Keep only proposals of GT videos; order by video, then descending score (stable).
    keep = pv < V
    pv, ps, pe, psc = pv[keep], ps[keep], pe[keep], psc[keep]
    order = np.lexsort((-psc, pv))
    pv, ps, pe = pv[order], ps[order], pe[order]
    pstart = np.searchsorted(pv, np.arange(V + 1))
    nprop = np.diff(pstart)
    # Python int(n * ratio) per video (same float product as the official code).
    nkeep = np.array([min(int(int(n) * ratio), int(n)) for n in nprop], dtype=np.int64)
    total_kept = int(nkeep.sum())
    if total_kept == 0:
        raise EvalError("no proposal kept for any ground-truth video")
    # Videos without proposals get one all-zero column (official quirk).
    ncols = np.where(nprop == 0, 1, nkeep)

    gorder = np.argsort(gv, kind="stable")
    gv_s, gs_s, ge_s = gv[gorder], gs[gorder], ge[gorder]
    gstart = np.searchsorted(gv_s, np.arange(V + 1))
    G = gv_s.shape[0]
    BIG = np.iinfo(np.int64).max
    first = np.full((T, G), BIG, dtype=np.int64)            # first column reaching thr
    for v in range(V):
        a, b = gstart[v], gstart[v + 1]
        if nprop[v] == 0:
            tiou = np.zeros((1, b - a))
        else:
            k = nkeep[v]
            if k == 0:
                continue
            s = pstart[v]
            tiou = segment_tiou(ps[s:s + k], pe[s:s + k], gs_s[a:b], ge_s[a:b])  # (K, g)
        hit = tiou[None, :, :] >= thr[:, None, None]        # (T, K, g)
        anyhit = hit.any(axis=1)
        first[:, a:b] = np.where(anyhit, hit.argmax(axis=1), BIG)

    pcn = np.arange(1, 101) / 100.0 * (an_max * float(V) / total_kept)
    kcols = np.minimum((ncols[:, None] * pcn[None, :]).astype(np.int64), ncols[:, None])
    kgt = kcols[gv_s]                                       # (G, 100)
    matches = (first[:, :, None] < kgt[None, :, :]).sum(axis=1).astype(np.float64)  # (T,100)
    recall = matches / float(G)
    avg_recall = recall.mean(axis=0)
    avg_props = pcn * (float(total_kept) / V)
    trap = np.sum(np.diff(avg_props) * (avg_recall[1:] + avg_recall[:-1]) / 2.0)
    auc = 100.0 * float(trap) / avg_props[-1]

    def ar_at(k):
        j = int(math.ceil(k * 100.0 / an_max)) - 1
        return float(avg_recall[min(max(j, 0), 99)])

    return {
        "AR@1": ar_at(1),
        "AR@5": ar_at(5),
        "AR@10": ar_at(10),
        "AR@100": ar_at(100),
        "AUC": float(auc),
        "average_recall": avg_recall.tolist(),
        "avg_proposals": avg_props.tolist(),
    }


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
