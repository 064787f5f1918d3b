#!/usr/bin/env python3
"""Confirms oracle.py against the official G-TAD code itself (run once, outside the repository).

The official `gtad_lib/models.py`, `loss_function.py` and `dataset.py` (anet branch) are imported
unchanged from OFFICIAL_DIR; their CUDA extension `Align1D` is replaced by a CPU stand-in below,
a line-by-line transliteration of `Align1D_cuda_kernal.cu` (one output element or one gradient
element at a time, as the kernel's threads). `.cuda()` is made the identity. The official GTAD
and the oracle get the same random weights (float64) and inputs at T = 25, 50 and 100; forward
maps, boundary probabilities, targets, the loss and its parts, and the gradients of the loss
with respect to the input and every parameter are compared.

Usage (torch, numpy, pandas and h5py in a scratch venv; the official sources extracted to a
folder, e.g. `git archive anet gtad_lib | tar -x -C /tmp/gtad-anet`):
    python test-tools/gtad/confirm_official.py /tmp/gtad-anet
"""
import math
import os
import sys
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402


def _interp(data, height, t):
    """linear_interpolate of the kernel: (value weights, indices) or None."""
    if t < -1.0 or t > height:
        return None
    if t <= 0:
        t = np.float32(0.0)
    t_low = int(t)
    if t_low >= height - 1:
        t_high = t_low = height - 1
        t = np.float32(t_low)
    else:
        t_high = t_low + 1
    lt = np.float32(t - np.float32(t_low))
    ht = np.float32(np.float32(1.0) - lt)
    return t_low, t_high, float(ht), float(lt)


def _points(roi, pooled, sampling_ratio, pt):
    f = np.float32
    roi_start, roi_end = f(roi[1]), f(roi[2])
    roi_height = max(f(roi_end - roi_start), f(1.0))
    bin_size = f(roi_height / f(pooled))
    grid = sampling_ratio if sampling_ratio > 0 else int(math.ceil(f(roi_height / f(pooled))))
    for it in range(grid):
        yield f(f(roi_start + f(f(pt) * bin_size)) + f(f(f(it + 0.5) * bin_size) / f(grid))), grid


def stand_in_forward(inp, rois, pooled, sampling_ratio):
    x = inp.detach().numpy()
    r = rois.detach().to(torch.float32).numpy()
    n_rois, (_, ch, height) = len(r), x.shape
    out = np.zeros((n_rois, ch, pooled))
    for n in range(n_rois):
        b = int(r[n][0])
        for pt in range(pooled):
            acc = np.zeros(ch)
            count = 1
            for t, grid in _points(r[n], pooled, sampling_ratio, pt):
                count = grid
                w = _interp(None, height, t)
                if w is not None:
                    lo, hi, w1, w2 = w
                    acc += w1 * x[b, :, lo] + w2 * x[b, :, hi]
            out[n, :, pt] = acc / count
    return torch.from_numpy(out).to(inp.dtype)


def stand_in_backward(grad, rois, pooled, bs, ch, height, sampling_ratio):
    g = grad.detach().numpy()
    r = rois.detach().to(torch.float32).numpy()
    out = np.zeros((bs, ch, height))
    for n in range(len(r)):
        b = int(r[n][0])
        for pt in range(pooled):
            for t, grid in _points(r[n], pooled, sampling_ratio, pt):
                w = _interp(None, height, t)
                if w is None:
                    continue
                lo, hi, w1, w2 = w
                out[b, :, lo] += g[n, :, pt] * w1 / grid
                out[b, :, hi] += g[n, :, pt] * w2 / grid
    return torch.from_numpy(out).to(grad.dtype)


def install_stand_ins():
    mod = types.ModuleType("Align1D")
    mod.forward = stand_in_forward
    mod.backward = stand_in_backward
    sys.modules["Align1D"] = mod
    torch.Tensor.cuda = lambda self, *a, **k: self


OFFICIAL_TO_ORACLE = {
    "backbone1.0": "stem", "backbone1.2": "backbone1", "regu_s.0": "start_gcn",
    "regu_s.1": "start_out", "regu_e.0": "end_gcn", "regu_e.1": "end_out",
    "backbone2.0": "backbone2", "localization.0": "loc1", "localization.2": "loc2",
    "localization.4": "loc3", "localization.6": "loc4", "localization.8": "loc5",
}
GCNEXT = {"tconvs.0": "tconv1", "tconvs.2": "tconv2", "tconvs.4": "tconv3",
          "sconvs.0": "sconv1", "sconvs.2": "sconv2", "sconvs.4": "sconv3"}


def oracle_name(name):
    for off, ours in OFFICIAL_TO_ORACLE.items():
        if name.startswith(off + "."):
            rest = name[len(off) + 1:]
            for o2, w2 in GCNEXT.items():
                if rest.startswith(o2 + "."):
                    rest = w2 + rest[len(o2):]
            return ours + "." + rest
    raise KeyError(name)


def worst(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max() / max(1.0, float(b.abs().max())))


def main(official):
    install_stand_ins()
    sys.path.insert(0, official)
    from gtad_lib import models, loss_function, dataset  # noqa: E402

    torch.manual_seed(7)
    feat, h1, h2, h3 = 8, 8, 8, 16
    report = []
    for t, bs in ((25, 2), (50, 2), (100, 1)):
        opt = {"temporal_scale": t, "feat_dim": feat, "batch_size": bs, "h_dim_1d": h1,
               "h_dim_2d": h2, "h_dim_3d": h3, "goi_style": 1, "max_duration": t, "goi_samp": 0,
               "kern_2d": 1, "pad_2d": 0}
        off = models.GTAD(opt).double()
        ours = oracle.Gtad(feat, h1, h2, h3).double()
        with torch.no_grad():
            for p in off.parameters():
                p.uniform_(-0.5, 0.5)
        sd = {oracle_name(k): v for k, v in off.state_dict().items()}
        ours.load_state_dict(sd)
        x = torch.randn(bs, feat, t, dtype=torch.float64)
        x_off = x.clone().requires_grad_()
        x_our = x.clone().requires_grad_()

        # Targets: official dataset.py on a synthetic video of 1 s (percentages = seconds).
        ds = dataset.VideoDataSet.__new__(dataset.VideoDataSet)
        ds.temporal_scale, ds.temporal_gap = t, 1.0 / t
        ds._get_match_map()
        segs_all, gts_off, gts_our = [], [], []
        rng = np.random.default_rng(t)
        for v in range(bs):
            segs = []
            for _ in range(1 + v):
                a, b = sorted(rng.uniform(0.0, 1.0, 2))
                segs.append([a, b])
            segs_all.append(segs)
            ds.video_list = ["v"]
            ds.video_dict = {"v": {"duration_frame": 100, "duration_second": 1.0,
                                   "feature_frame": 100,
                                   "annotations": [{"segment": s} for s in segs]}}
            gs, ge, gi = ds._get_train_label(0, ds.anchor_xmin, ds.anchor_xmax)
            gts_off.append((gs, ge, gi))
            gts_our.append(oracle.targets(segs, t))
        for (a, b, c), (d, e, f) in zip(gts_off, gts_our):
            report.append((t, "targets", max(worst(a, d), worst(b, e), worst(c, f))))
        gs = torch.stack([g[0] for g in gts_off]).double()
        ge = torch.stack([g[1] for g in gts_off]).double()
        gi = torch.stack([g[2] for g in gts_off]).double()

        u = oracle.uniform(11, bs * t * t).reshape(bs, t, t)
        draws = iter([u, u])
        real_rand = np.random.rand
        np.random.rand = lambda *shape: next(draws).astype(np.float64)
        maps_o, s_o, e_o = off(x_off)
        bm_mask = loss_function.get_mask(t).double()
        lo = loss_function.gtad_loss_func(maps_o, s_o, e_o, gi, gs, ge, bm_mask)
        np.random.rand = real_rand
        lo[0].backward()

        maps_u, s_u, e_u = ours(x_our)
        lu = oracle.gtad_loss(maps_u, s_u, e_u, gi, gs, ge, torch.from_numpy(u), torch.from_numpy(u))
        lu[0].backward()

        report.append((t, "maps", worst(maps_u, maps_o)))
        report.append((t, "start/end", max(worst(s_u, s_o), worst(e_u, e_o))))
        # Official loss parts: total, tem, reg, cls.
        report.append((t, "loss parts", max(worst(a.detach(), b.detach()) for a, b in zip(lu, lo))))
        report.append((t, "d/dx", worst(x_our.grad, x_off.grad)))
        our_params = dict(ours.named_parameters())
        gw = max(worst(our_params[oracle_name(k)].grad, p.grad) for k, p in off.named_parameters())
        report.append((t, "d/dparams (all)", gw))
        props_o = oracle.proposals(s_o[0].detach().numpy(), e_o[0].detach().numpy(),
                                   maps_o[0, 1].detach().numpy(), maps_o[0, 0].detach().numpy())
        report.append((t, "proposals", float(len(props_o))))
    for t, what, err in report:
        print(f"T = {t:3d}  {what:18s} {err:.3e}")
    bad = [r for r in report if r[1] != "proposals" and r[2] > 1e-6]
    print("CONFIRMED" if not bad else f"MISMATCH: {bad}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
