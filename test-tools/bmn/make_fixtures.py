#!/usr/bin/env python3
"""Fixtures of BMN's reference behaviour (oracle.py) for lofi's tests (not run in CI).

Writes into crates/lofi-model/tests/fixtures `bmn_oracle.safetensors`:
- one set of random head weights (lofi's parameter names, PyTorch layouts; widths 8 / 8 / 16,
  the published 32 bins of 3 points);
- `mask.L10`: the sampling mask at T = 10 as lofi stores it, [N, T (snippet), T (start) x T (end)];
- at T = 25 (2 videos), 50 and 100 (1 video), under `L<T>.`: the input features, each video's
  segments, the start / end probabilities and both maps in lofi's [duration - 1, start] layout,
  the targets (same layout), the loss parts (total, TEM, regression, classification; band draws
  from lofi's splitmix64 with seed T in lofi's [duration, start] order) and the gradients of
  the total loss for the input and six parameters;
and into crates/lofi-head/tests/fixtures `bmn_proposals.json`: random start / end probabilities
and maps at T = 25 (lofi's [duration - 1, start] layout), every proposal of the reference's
inference loop (xmin, xmax, score) and what its Soft-NMS keeps (alpha 0.4, thresholds 0.5 / 0.9,
best 100), as fractions of the video.
Everything is computed in float64 from float32-rounded weights and inputs, stored as float32.

Usage (torch, numpy, safetensors in a scratch venv):
    python test-tools/bmn/make_fixtures.py
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402

OUT_HEAD = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "lofi-head", "tests", "fixtures")
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "lofi-model", "tests", "fixtures")
FEAT, H1, H2, H3 = 8, 8, 8, 16


def f32(t):
    return torch.as_tensor(t).detach().to(torch.float32).contiguous()


def r32(t):
    return t.to(torch.float32).to(torch.float64)


def se_draws(u_dt):
    """lofi's draws ([B, D, T], duration-major) placed where the oracle's [start, end] maps read them."""
    b, t, _ = u_dt.shape
    u = np.zeros((b, t, t), dtype=np.float32)
    for d in range(t):
        for s in range(t - d):
            u[:, s, s + d] = u_dt[:, d, s]
    return torch.from_numpy(u)


def se_to_dt(a):
    """[..., T (start), T (end)] numpy -> [..., T (duration - 1), T (start)]."""
    return oracle.to_duration_start(torch.as_tensor(a)).numpy()


def main():
    torch.manual_seed(2019)
    head = oracle.Bmn(FEAT, H1, H2, H3).double()
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(r32(p))
    out = {k: v for k, v in head.state_dict().items()}
    m = oracle.mask(10)  # [T, N, S, E]
    out["mask.L10"] = torch.from_numpy(m.transpose(1, 0, 2, 3).reshape(oracle.N_BINS, 10, 100))
    rng = np.random.default_rng(19)
    for t, bs in ((25, 2), (50, 1), (100, 1)):
        head.zero_grad()
        x = r32(torch.randn(bs, FEAT, t, dtype=torch.float64)).requires_grad_()
        gts = []
        for v in range(bs):
            a = rng.uniform(0.0, 0.5, 1 + v)
            segs = np.stack((a, a + rng.uniform(0.1, 0.5, 1 + v)), axis=1).astype(np.float32)
            out[f"L{t}.segments.{v}"] = torch.from_numpy(segs)
            gts.append(oracle.targets(segs.astype(np.float64), t))
        gs = torch.from_numpy(np.stack([g[0] for g in gts]))
        ge = torch.from_numpy(np.stack([g[1] for g in gts]))
        gi = torch.from_numpy(np.stack([g[2] for g in gts]))
        u = se_draws(oracle.uniform(t, bs * t * t).reshape(bs, t, t))
        maps, start, end = head(x)
        parts = oracle.loss(maps, start, end, gi, gs, ge, u)
        assert all(bool(torch.isfinite(q)) for q in parts), parts
        parts[0].backward()
        p = dict(head.named_parameters())
        out.update({
            f"L{t}.x": x, f"L{t}.start": start, f"L{t}.end": end,
            f"L{t}.maps": oracle.to_duration_start(maps),
            f"L{t}.target.start": gs, f"L{t}.target.end": ge,
            f"L{t}.target.iou": torch.from_numpy(se_to_dt(gi.numpy() * oracle.bm_mask(t).numpy())),
            f"L{t}.loss": torch.stack([q.detach() for q in parts]),
            f"L{t}.grad.x": x.grad,
        })
        print(f"T = {t}: maps in [{float(maps.min()):.3f}, {float(maps.max()):.3f}], loss parts "
              f"{[round(float(q), 5) for q in parts]}")
        for n in ["base1.weight", "start2.bias", "proposal.weight", "bins.weight", "map2.weight",
                  "map4.bias"]:
            out[f"L{t}.grad.{n}"] = p[n].grad
    # Post-processing.
    t = 25
    start = rng.uniform(0, 1, t).astype(np.float32)
    end = rng.uniform(0, 1, t).astype(np.float32)
    clr = rng.uniform(0, 1, (t, t)).astype(np.float32)  # [start, end]
    reg = rng.uniform(0, 1, (t, t)).astype(np.float32)
    props = oracle.proposals(start.astype(np.float64), end.astype(np.float64), clr, reg)
    kept = oracle.soft_nms(props, 0.4, 0.5, 0.9)
    mask = oracle.bm_mask(t).numpy()
    fl = lambda a: [float(v) for v in np.asarray(a).reshape(-1)]
    post = {"l": t, "start": fl(start), "end": fl(end), "cls": fl(se_to_dt(clr * mask)),
            "reg": fl(se_to_dt(reg * mask)), "proposals": [list(p) for p in props],
            "kept": [list(p) for p in kept]}
    path = os.path.join(OUT_HEAD, "bmn_proposals.json")
    with open(path, "w") as f:
        json.dump(post, f)
    print(f"{path}: {len(props)} proposals, {len(kept)} kept")
    path = os.path.join(OUT, "bmn_oracle.safetensors")
    save_file({k: f32(v) for k, v in out.items()}, path)
    print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
