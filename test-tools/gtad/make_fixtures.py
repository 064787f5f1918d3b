#!/usr/bin/env python3
"""Fixtures of the official G-TAD behaviour (oracle.py) for lofi's tests (not run in CI).

Writes into crates/lofi-model/tests/fixtures:
- `gtad_oracle.safetensors`: one set of random head weights (lofi's parameter names, PyTorch
  layouts) and, at T = 25 (2 videos), 50 and 100 (1 video), under `L<T>.`: the input features,
  the segments of each video, the start/end probabilities and maps, the targets, the loss parts
  (total, boundary, regression, classification; band draws from lofi's splitmix64 with seed T)
  and the gradients of the total loss for the input and a few parameters; plus SGAlign alone at
  T = 5 (`sgalign.`) with the gradient of sum(output * probe);
and into crates/lofi-head/tests/fixtures:
- `gtad_proposals.json`: random start/end probabilities and maps at T = 25 and the proposals
  (xmin, xmax, clr x reg) of G-TAD's inference rule.
Everything is computed in float64 from float32-rounded weights and inputs, stored as float32.

Usage (torch, numpy, safetensors in a scratch venv):
    python test-tools/gtad/make_fixtures.py
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
    """Rounds to float32 and back, so that both sides start from identical values."""
    return t.to(torch.float32).to(torch.float64)


def save(name, tensors):
    path = os.path.join(OUT, name + ".safetensors")
    save_file({k: f32(v) for k, v in tensors.items()}, path)
    print(f"{path}: {os.path.getsize(path)} bytes")


def head_cases():
    torch.manual_seed(2020)
    head = oracle.Gtad(FEAT, H1, H2, H3).double()
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(r32(p))
    out = {k: v for k, v in head.state_dict().items()}
    rng = np.random.default_rng(16)
    for t, bs in ((25, 2), (50, 1), (100, 1)):
        head.zero_grad()
        x = r32(torch.randn(bs, FEAT, t, dtype=torch.float64)).requires_grad_()
        gts = []
        for v in range(bs):
            # Actions of 10-50 % of the video, so that every band and class of the loss is
            # populated (the official loss is NaN without a high-IoU anchor).
            a = rng.uniform(0.0, 0.5, 1 + v)
            segs = np.stack((a, a + rng.uniform(0.1, 0.5, 1 + v)), axis=1).astype(np.float32)
            out[f"L{t}.segments.{v}"] = torch.from_numpy(segs)
            gts.append(oracle.targets(segs.astype(np.float64), t))
        gs = torch.from_numpy(np.stack([g[0] for g in gts])).double()
        ge = torch.from_numpy(np.stack([g[1] for g in gts])).double()
        gi = torch.from_numpy(np.stack([g[2] for g in gts])).double()
        u = torch.from_numpy(oracle.uniform(t, bs * t * t).reshape(bs, t, t))
        maps, start, end = head(x)
        parts = oracle.gtad_loss(maps, start, end, gi, gs, ge, u, u)
        assert all(bool(torch.isfinite(q)) for q in parts), parts
        parts[0].backward()
        p = dict(head.named_parameters())
        out.update({
            f"L{t}.x": x, f"L{t}.start": start, f"L{t}.end": end, f"L{t}.maps": maps,
            f"L{t}.target.start": gs, f"L{t}.target.end": ge, f"L{t}.target.iou": gi * oracle.mask(t),
            f"L{t}.loss": torch.stack([q.detach() for q in parts]),
            f"L{t}.grad.x": x.grad,
        })
        names = ["stem.weight", "backbone2.sconv1.weight", "start_out.bias", "end_out.weight",
                 "loc1.bias", "loc5.weight"] + (["loc1.weight"] if t == 25 else [])
        print(f"T = {t}: maps in [{float(maps.min()):.3f}, {float(maps.max()):.3f}], start in "
              f"[{float(start.min()):.3f}, {float(start.max()):.3f}], loss parts {[float(q) for q in parts]}")
        for n in names:
            out[f"L{t}.grad.{n}"] = p[n].grad
    # SGAlign alone.
    x = r32(torch.randn(1, 4, 5, dtype=torch.float64)).requires_grad_()
    ctx = r32(torch.randn(1, 4, 5, dtype=torch.float64)).requires_grad_()
    y = oracle.sgalign(x, ctx)
    probe = r32(torch.randn_like(y))
    (y * probe).sum().backward()
    out.update({"sgalign.x": x, "sgalign.ctx": ctx, "sgalign.y": y, "sgalign.probe": probe,
                "sgalign.grad.x": x.grad, "sgalign.grad.ctx": ctx.grad})
    save("gtad_oracle", out)


def proposal_case():
    rng = np.random.default_rng(25)
    t = 25
    start = rng.uniform(0, 1, t).astype(np.float32)
    end = rng.uniform(0, 1, t).astype(np.float32)
    clr = rng.uniform(0, 1, (t, t)).astype(np.float32)
    reg = rng.uniform(0, 1, (t, t)).astype(np.float32)
    props = oracle.proposals(start.astype(np.float64), end.astype(np.float64), clr, reg)
    fl = lambda a: [float(v) for v in np.asarray(a).reshape(-1)]
    path = os.path.join(OUT_HEAD, "gtad_proposals.json")
    with open(path, "w") as f:
        json.dump({"l": t, "start": fl(start), "end": fl(end), "clr": fl(clr), "reg": fl(reg),
                   "proposals": [list(p) for p in props]}, f)
    print(f"{path}: {os.path.getsize(path)} bytes, {len(props)} proposals")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(OUT_HEAD, exist_ok=True)
    head_cases()
    proposal_case()
