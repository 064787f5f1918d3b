#!/usr/bin/env python3
"""Deterministic generator of an ActivityNet-sized synthetic evaluation input (stdlib only).

What it is
    Writes, into --out DIR:
      ground_truth.json  {"version", "taxonomy", "database": {vid: {"subset": "validation",
                          "duration", "annotations": [{"segment", "label"}]}}}
                          (1-3 segments per video, one main class per video like ActivityNet)
      proposals.json     {"version", "external_data", "results": {vid: [{"score", "segment"}]}}
                          (100 proposals per video; about 40% are jittered copies of a
                          ground-truth segment, the rest random)
      detections.json    same layout with "label": each proposal is emitted for the video's
                          top-2 classes (--per-video 200 = 100 proposals x 2 classes),
                          score = proposal score x class score.
    Default sizes mirror ActivityNet v1.3 validation (4,926 videos, 200 classes, ~985k
    detections). It exists so that the `lofi eval` benchmark and anet_numpy.py /
    anet_reference.py time and check exactly the same files; the same seed always gives the
    same bytes (Python's random.Random is stable across CPython 3 versions for the calls used).

    All scores within a file are distinct (a unique tiny offset is added per entry and checked),
    so every evaluator's result is independent of its tie-breaking rule.

Usage
    python3 make_anet_scale.py --out DIR [--seed 0] [--videos 4926] [--classes 200]
                               [--per-video 200]
"""

import argparse
import json
import os
import random
import string


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--videos", type=int, default=4926)
    p.add_argument("--classes", type=int, default=200)
    p.add_argument("--per-video", type=int, default=200,
                   help="detections per video (= proposals per video x 2 classes)")
    a = p.parse_args()
    if a.per_video < 2 or a.per_video % 2 or a.classes < 2 or a.videos < 2:
        p.error("--per-video must be an even number >= 2, --classes and --videos >= 2")
    # Classes 0..n_lab-1 are the main class of videos 0..n_lab-1, so every predicted label
    # is a ground-truth label (an unknown label is an error for the evaluators).
    n_lab = min(a.classes, a.videos)
    n_props = a.per_video // 2
    rnd = random.Random(a.seed)
    classes = ["class_%03d" % i for i in range(a.classes)]
    alphabet = string.ascii_letters + string.digits + "-_"

    total_entries = a.videos * (n_props + a.per_video)
    if total_entries >= 10 ** 7:
        p.error("too many entries for the unique-offset scheme")
    uniq = list(range(total_entries))
    rnd.shuffle(uniq)
    ucount = 0

    def distinct(q):
        # q rounded to 1e-6, plus a unique offset < 1e-6: all values distinct.
        nonlocal ucount
        v = round(q, 6) + uniq[ucount] * 1e-13
        ucount += 1
        return v

    database = {}
    proposals = {}
    detections = {}
    seen = set()
    for vi in range(a.videos):
        while True:
            vid = "v_" + "".join(rnd.choice(alphabet) for _ in range(11))
            if vid not in seen:
                seen.add(vid)
                break
        duration = round(rnd.uniform(20.0, 240.0), 2)
        main_cls = vi if vi < n_lab else rnd.randrange(n_lab)
        anns = []
        for _ in range(rnd.randint(1, 3)):
            length = rnd.uniform(0.05, 0.6) * duration
            start = rnd.uniform(0.0, duration - length)
            label = main_cls if rnd.random() < 0.9 else rnd.randrange(a.classes)
            anns.append({"segment": [round(start, 2), round(start + length, 2)],
                         "label": classes[label]})
        database[vid] = {"subset": "validation", "duration": duration,
                         "url": "https://www.youtube.com/watch?v=" + vid[2:],
                         "annotations": anns}

        plist = []
        for _ in range(n_props):
            if rnd.random() < 0.4:
                s, e = rnd.choice(anns)["segment"]
                jit = 0.25 * (e - s)
                s2 = min(max(0.0, s + rnd.uniform(-jit, jit)), duration - 0.1)
                e2 = min(duration, max(s2 + 0.1, e + rnd.uniform(-jit, jit)))
                q = rnd.uniform(0.3, 1.0)
            else:
                length = rnd.uniform(0.02, 0.8) * duration
                s2 = rnd.uniform(0.0, duration - length)
                e2 = s2 + length
                q = rnd.uniform(0.0, 0.7)
            plist.append((round(s2, 3), round(e2, 3), q))
        proposals[vid] = [{"score": distinct(q), "segment": [s, e]} for s, e, q in plist]

        top1 = main_cls if rnd.random() < 0.8 else rnd.randrange(n_lab)
        top2 = rnd.randrange(n_lab - 1)
        if top2 >= top1:
            top2 += 1
        c1 = rnd.uniform(0.5, 1.0)
        c2 = rnd.uniform(0.0, c1)
        dets = []
        for s, e, q in plist:
            dets.append({"label": classes[top1], "score": distinct(q * c1), "segment": [s, e]})
            dets.append({"label": classes[top2], "score": distinct(q * c2), "segment": [s, e]})
        detections[vid] = dets

    for name, data in (("proposals", proposals), ("detections", detections)):
        scores = [r["score"] for lst in data.values() for r in lst]
        assert len(set(scores)) == len(scores), "scores not distinct in " + name

    os.makedirs(a.out, exist_ok=True)
    taxonomy = [{"nodeName": c, "nodeId": i, "parentName": "Root", "parentId": 0}
                for i, c in enumerate(classes)]
    with open(os.path.join(a.out, "ground_truth.json"), "w") as f:
        json.dump({"version": "VERSION 1.3 (synthetic, seed %d)" % a.seed,
                   "taxonomy": taxonomy, "database": database}, f)
    for name, data in (("proposals", proposals), ("detections", detections)):
        with open(os.path.join(a.out, name + ".json"), "w") as f:
            json.dump({"version": "VERSION 1.3", "external_data": {"used": False},
                       "results": data}, f)


if __name__ == "__main__":
    main()
