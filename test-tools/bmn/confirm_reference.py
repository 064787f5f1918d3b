#!/usr/bin/env python3
"""Confirms oracle.py against the BMN reference code itself (run once, outside the repository).

The reference is JJBOY/BMN-Boundary-Matching-Network at commit a92c1d7: its `models.py`,
`loss_function.py`, `dataset.py`, `utils.py` and `post_processing.py` are imported unchanged
from REF_DIR (`.cuda()` made the identity; the loss's `np.random.rand` fed the same uniform
draws as the oracle), and the proposal loop of `main.py`'s `BMN_inference` is run from its
source text (the lines between `new_props = []` and `new_props = np.stack(new_props)`), so that
no reference line is retyped here. Compared, at T = 10, 25 and 50 (float64, same weights):
- the sampling mask (reference `sample_mask` vs `oracle.mask`);
- the forward maps, start and end probabilities;
- the training targets (`VideoDataSet._get_train_label` on a made-up annotation whose feature
  coverage equals its duration) ;
- the loss and its three parts (`bmn_loss_func`), and the gradients of the total loss for the
  input and every parameter;
- the proposals of the inference loop and `soft_nms` of `post_processing.py` with the reference's
  options (alpha 0.4, low 0.5, high 0.9), then the best 100 as `video_post_process` keeps them.

Usage (torch, numpy, pandas in a scratch venv; the reference sources extracted to a folder,
e.g. `git archive a92c1d7 models.py loss_function.py dataset.py utils.py post_processing.py
main.py | tar -x -C /tmp/bmn-ref`):
    python test-tools/bmn/confirm_reference.py /tmp/bmn-ref
"""
import os
import sys

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402

REF = sys.argv[1]
sys.path.insert(0, REF)
torch.Tensor.cuda = lambda self, *a, **k: self
import dataset as ref_dataset  # noqa: E402
import loss_function as ref_loss  # noqa: E402
import models as ref_models  # noqa: E402
import post_processing as ref_post  # noqa: E402

FEAT, H1, H2, H3 = 8, 8, 8, 16
worst = {}


def report(name, got, want):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    worst[name] = max(worst.get(name, 0.0), err)
    print(f"  {name:28s} max abs difference {err:.3e} (scale {float(np.max(np.abs(want))):.3g})")
    return err


def build_ref(t):
    """The reference BMN at our small widths: its __init__ with the width constants patched."""
    src_init = ref_models.BMN.__init__

    def init(self, opt):
        torch.nn.Module.__init__(self)
        self.tscale = opt["temporal_scale"]
        self.prop_boundary_ratio = opt["prop_boundary_ratio"]
        self.num_sample = opt["num_sample"]
        self.num_sample_perbin = opt["num_sample_perbin"]
        self.feat_dim = opt["feat_dim"]
        self.hidden_dim_1d, self.hidden_dim_2d, self.hidden_dim_3d = H1, H2, H3
        self._get_interp1d_mask()
        # The rest of the reference constructor, run from its source with our widths.
        import inspect
        lines = inspect.getsource(src_init).splitlines()
        start = next(i for i, ln in enumerate(lines) if "# Base Module" in ln)
        body = "\n".join(ln[8:] for ln in lines[start:])
        exec(body, {"nn": torch.nn}, {"self": self})

    cls = type("RefBMN", (ref_models.BMN,), {"__init__": init})
    opt = {"temporal_scale": t, "prop_boundary_ratio": 0.5, "num_sample": 32,
           "num_sample_perbin": 3, "feat_dim": FEAT}
    return cls(opt).double()


def copy_weights(ref, ours):
    pairs = {
        "x_1d_b.0": ours.base1, "x_1d_b.2": ours.base2,
        "x_1d_s.0": ours.start1, "x_1d_s.2": ours.start2,
        "x_1d_e.0": ours.end1, "x_1d_e.2": ours.end2,
        "x_1d_p.0": ours.proposal, "x_3d_p.0": ours.bins,
        "x_2d_p.0": ours.map1, "x_2d_p.2": ours.map2, "x_2d_p.4": ours.map3, "x_2d_p.6": ours.map4,
    }
    mods = dict(ref.named_modules())
    with torch.no_grad():
        for name, mine in pairs.items():
            mods[name].weight.copy_(mine.weight)
            mods[name].bias.copy_(mine.bias)
    return pairs


def ref_targets(segs, t):
    ds = ref_dataset.VideoDataSet.__new__(ref_dataset.VideoDataSet)
    ds.temporal_scale = t
    ds.temporal_gap = 1.0 / t
    ds.anchor_xmin = [ds.temporal_gap * (i - 0.5) for i in range(t)]
    ds.anchor_xmax = [ds.temporal_gap * (i + 0.5) for i in range(t)]
    duration = 100.0
    ds.video_list = ["v"]
    ds.video_dict = {"v": {"duration_frame": 1000, "duration_second": duration, "feature_frame": 1000,
                           "annotations": [{"segment": [s * duration, e * duration]} for s, e in segs]}}
    ms, me, iou = ds._get_train_label(0, ds.anchor_xmin, ds.anchor_xmax)
    return ms.double().numpy(), me.double().numpy(), iou.double().numpy()


def ref_proposals(start_scores, end_scores, clr_confidence, reg_confidence, tscale):
    import inspect
    import main  # noqa: F401  (only its source text is used)
    src = inspect.getsource(main.BMN_inference).splitlines()
    a = next(i for i, ln in enumerate(src) if "new_props = []" in ln)
    b = next(i for i, ln in enumerate(src) if "new_props = np.stack(new_props)" in ln)
    indent = len(src[a]) - len(src[a].lstrip())
    body = "\n".join(ln[indent:] for ln in src[a:b + 1])
    scope = {"np": np, "tscale": tscale, "start_scores": start_scores, "end_scores": end_scores,
             "clr_confidence": clr_confidence, "reg_confidence": reg_confidence}
    exec(body, scope)
    return scope["new_props"]


def main_check():
    sys.modules.setdefault("eval", type(sys)("eval"))
    sys.modules["eval"].evaluation_proposal = None
    rng = np.random.default_rng(7)
    torch.manual_seed(1)
    for t, bs in ((10, 2), (25, 2), (50, 1)):
        print(f"T = {t}")
        ref = build_ref(t)
        report("sampling mask", ref.sample_mask.detach().numpy().reshape(t, 32, t, t), oracle.mask(t))
        ours = oracle.Bmn(FEAT, H1, H2, H3).double()
        copy_weights(ref, ours)
        x = torch.randn(bs, FEAT, t, dtype=torch.float64)
        xr = x.clone().requires_grad_()
        xo = x.clone().requires_grad_()
        cm, s_r, e_r = ref(xr)
        maps, s_o, e_o = ours(xo)
        report("maps", maps.detach(), cm.detach())
        report("start", s_o.detach(), s_r.detach())
        report("end", e_o.detach(), e_r.detach())
        gts = []
        for v in range(bs):
            a = rng.uniform(0.0, 0.5, 1 + v)
            segs = np.stack((a, a + rng.uniform(0.1, 0.5, 1 + v)), axis=1)
            segs = np.minimum(segs, 1.0)
            r = ref_targets(segs, t)
            o = oracle.targets(segs, t)
            report("target start", o[0], r[0])
            report("target end", o[1], r[1])
            report("target iou", o[2], r[2])
            gts.append(o)
        gs = torch.tensor(np.stack([g[0] for g in gts]))
        ge = torch.tensor(np.stack([g[1] for g in gts]))
        gi = torch.tensor(np.stack([g[2] for g in gts]))
        u = oracle.uniform(t, bs * t * t).reshape(bs, t, t).astype(np.float64)
        ref_loss.np.random.rand = lambda *shape: u
        parts_r = ref_loss.bmn_loss_func(cm, s_r, e_r, gi, gs, ge, ref_loss.get_mask(t).double())
        parts_o = oracle.loss(maps, s_o, e_o, gi, gs, ge, torch.from_numpy(u).to(torch.float32))
        for name, a, b in zip(("loss total", "loss tem", "loss reg", "loss cls"), parts_o, parts_r):
            report(name, float(a), float(b))
        parts_r[0].backward()
        parts_o[0].backward()
        report("grad input", xo.grad, xr.grad)
        mods = dict(ref.named_modules())
        pairs = {"x_1d_b.0": ours.base1, "x_1d_s.2": ours.start2, "x_1d_p.0": ours.proposal,
                 "x_3d_p.0": ours.bins, "x_2d_p.2": ours.map2, "x_2d_p.6": ours.map4}
        for name, mine in pairs.items():
            report(f"grad {name}.weight", mine.weight.grad, mods[name].weight.grad)
            report(f"grad {name}.bias", mine.bias.grad, mods[name].bias.grad)
        # Proposals and Soft-NMS of the first video.
        st, en = s_o[0].detach().numpy(), e_o[0].detach().numpy()
        clr, reg = maps[0, 1].detach().numpy(), maps[0, 0].detach().numpy()
        props_r = ref_proposals(st, en, clr, reg, t)
        props_o = oracle.proposals(st, en, clr, reg)
        report("proposals", np.array([p[:2] + (p[2],) for p in props_o]),
               props_r[:, [0, 1, 6]])
        df = pd.DataFrame(props_r[:, [0, 1, 6]], columns=["xmin", "xmax", "score"])
        kept_r = ref_post.soft_nms(df, 0.4, 0.5, 0.9).sort_values(by="score", ascending=False)[:100]
        kept_o = oracle.soft_nms(props_o, 0.4, 0.5, 0.9)
        report("soft-nms kept", np.array(kept_o),
               kept_r[["xmin", "xmax", "score"]].to_numpy())
        print(f"  {len(props_o)} proposals, {len(kept_o)} kept")
    print("worst differences:", {k: f"{v:.2e}" for k, v in worst.items()})


if __name__ == "__main__":
    main_check()
