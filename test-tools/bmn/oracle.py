"""An oracle of BMN as the widely used PyTorch reimplementation computes it
(JJBOY/BMN-Boundary-Matching-Network, commit a92c1d7), on the CPU, in float64.
Written by us from reading that code, not copied from it:
- the boundary-matching sampling mask (`models.py`, `_get_interp1d_mask` and
  `_get_interp1d_bin_mask`): for the anchor (start s, end e >= s), p_xmin = s, p_xmax = e + 1,
  center_len = p_xmax - p_xmin + 1, extended range [p_xmin - 0.5 center_len, p_xmax + 0.5
  center_len] holding N * 3 evenly spaced points (spacing range / (3N - 1)); bin n averages
  points 3n..3n+2, each split between floor and ceil with Python's `math.modf` semantics (a
  negative point's fraction is negative), taps outside [0, T - 1] dropped; entries with s > e 0;
  layout [T (snippet), N, T (start), T (end)];
- the network (`models.py`) with lofi's parameter names: base1, base2 (grouped 1-D convs),
  start1/start2 and end1/end2 (TEM), proposal (1-D conv), bins (the Conv3d over the N bins),
  map1..map4 (the 2-D convs);
- the targets (`dataset.py`, `_get_train_label`): boundary windows [(i - 0.5) / T,
  (i + 0.5) / T], regions 3 / T wide around each boundary, IoU map [s, e] = IoU of
  [s / T, (e + 1) / T] with the closest action for e >= s;
- the loss (`loss_function.py`): TEM ratio-weighted BCE, PEM regression over sampled bands
  (the uniform draws are an argument: lofi's splitmix64 stream), PEM classification BCE,
  total = TEM + 10 reg + cls; the map mask is the upper triangle e >= s;
- the proposals of `main.py` (every start < end < T, score start x end x cls x reg read at
  [start, end - 1]) and the Soft-NMS of `post_processing.py` (decay exp(-o^2 / alpha) only above
  low + (high - low) x the kept proposal's width, the loop stopping when one candidate is left,
  at most 101 kept, then the best 100).
`to_duration_start` turns a [start, end] map into lofi's [duration - 1, start] layout.
`confirm_reference.py` checks this oracle once against the reference code itself;
`make_fixtures.py` writes the fixtures the Rust tests compare lofi with.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

N_BINS = 32
PER_BIN = 3
RATIO = 0.5


# ------------------------------------------------------------------------------------------------
# Sampling mask

def point_taps(x, t):
    """(index, weight) pairs of one sample point x: floor and ceil, modf semantics."""
    frac, whole = math.modf(x)
    out = []
    lo, hi = int(whole), int(math.ceil(x))
    if 0 <= lo <= t - 1:
        out.append((lo, 1.0 - frac))
    if 0 <= hi <= t - 1:
        out.append((hi, frac))
    return out


def mask(t, n=N_BINS, per_bin=PER_BIN, ratio=RATIO):
    """[T (snippet), N, T (start), T (end)] float64."""
    m = np.zeros((t, n, t, t))
    total = n * per_bin
    for s in range(t):
        for e in range(s, t):
            length = (e + 1 - s) + 1.0
            lo = s - ratio * length
            hi = (e + 1) + ratio * length
            step = (hi - lo) / (total - 1.0)
            for k in range(total):
                for idx, w in point_taps(lo + k * step, t):
                    m[idx, k // per_bin, s, e] += w / per_bin
    return m


# ------------------------------------------------------------------------------------------------
# Network

class Bmn(nn.Module):
    def __init__(self, feat, h1, h2, h3, n=N_BINS):
        super().__init__()
        self.n = n
        self.base1 = nn.Conv1d(feat, h1, 3, padding=1, groups=4)
        self.base2 = nn.Conv1d(h1, h1, 3, padding=1, groups=4)
        self.start1 = nn.Conv1d(h1, h1, 3, padding=1, groups=4)
        self.start2 = nn.Conv1d(h1, 1, 1)
        self.end1 = nn.Conv1d(h1, h1, 3, padding=1, groups=4)
        self.end2 = nn.Conv1d(h1, 1, 1)
        self.proposal = nn.Conv1d(h1, h1, 3, padding=1)
        self.bins = nn.Conv3d(h1, h3, (n, 1, 1), stride=(n, 1, 1))
        self.map1 = nn.Conv2d(h3, h2, 1)
        self.map2 = nn.Conv2d(h2, h2, 3, padding=1)
        self.map3 = nn.Conv2d(h2, h2, 3, padding=1)
        self.map4 = nn.Conv2d(h2, 2, 1)
        self._masks = {}

    def sample(self, x):
        t = x.shape[-1]
        if t not in self._masks:
            self._masks[t] = torch.from_numpy(mask(t, self.n)).to(x.dtype)
        return torch.einsum("bct,tnse->bcnse", x, self._masks[t])

    def forward(self, x):
        base = F.relu(self.base2(F.relu(self.base1(x))))
        start = torch.sigmoid(self.start2(F.relu(self.start1(base)))).squeeze(1)
        end = torch.sigmoid(self.end2(F.relu(self.end1(base)))).squeeze(1)
        p = F.relu(self.proposal(base))
        m = F.relu(self.bins(self.sample(p)).squeeze(2))
        m = F.relu(self.map1(m))
        m = F.relu(self.map2(m))
        m = F.relu(self.map3(m))
        return torch.sigmoid(self.map4(m)), start, end


def to_duration_start(m):
    """[..., T (start), T (end)] -> [..., T (duration - 1), T (start)], 0 where s + d >= T."""
    t = m.shape[-1]
    out = torch.zeros_like(m)
    for d in range(t):
        for s in range(t - d):
            out[..., d, s] = m[..., s, s + d]
    return out


# ------------------------------------------------------------------------------------------------
# Targets

def _overlap(a0, a1, b0, b1):
    return np.maximum(np.minimum(a1, b1) - np.maximum(a0, b0), 0.0)


def targets(segments, t):
    """(start [T], end [T], iou [T (start), T (end)]) in float64."""
    g = 1.0 / t
    segs = np.asarray(segments, dtype=np.float64)
    half = 1.5 * g
    windows = [((i - 0.5) * g, (i + 0.5) * g) for i in range(t)]

    def boundary(points):
        return np.array([max(_overlap(a, b, p - half, p + half) / (b - a) for p in points)
                         for a, b in windows])

    iou = np.zeros((t, t))
    for s in range(t):
        for e in range(s, t):
            a, b = s * g, (e + 1) * g
            inter = _overlap(a, b, segs[:, 0], segs[:, 1])
            iou[s, e] = np.max(inter / ((b - a) + (segs[:, 1] - segs[:, 0]) - inter))
    return boundary(segs[:, 0]), boundary(segs[:, 1]), iou


def bm_mask(t):
    """[start, end]: 1 where end >= start."""
    return torch.triu(torch.ones(t, t, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------
# Loss

EPS = 1e-6


def balanced_bce(pred, pos, neg, entries):
    p, n = torch.sum(pos), torch.sum(neg)
    total = p + n
    w_pos = 0.5 * total / p
    w_neg = 0.5 * total / n
    return -torch.sum(w_pos * torch.log(pred + EPS) * pos
                      + w_neg * torch.log(1.0 - pred + EPS) * neg) / entries


def tem(pred, gt):
    pred, gt = pred.reshape(-1), gt.reshape(-1)
    pos = (gt > 0.5).to(pred.dtype)
    return balanced_bce(pred, pos, 1.0 - pos, float(len(pred)))


def pem_reg(pred, gt, m, u):
    """Bands counted and compared in float32, as in fp32 training; u: uniform draws, gt's shape."""
    g32 = gt.to(torch.float32)
    high = (g32 > 0.7).to(torch.float32)
    mid = ((g32 <= 0.7) & (g32 > 0.3)).to(torch.float32)
    low = ((g32 <= 0.3) & (g32 > 0.0)).to(torch.float32) * m.to(torch.float32)
    keep_mid = ((mid * u) > (1.0 - torch.sum(high) / torch.sum(mid))).to(torch.float32)
    keep_low = ((low * u) > (1.0 - torch.sum(high) / torch.sum(low))).to(torch.float32)
    w = (high + keep_mid + keep_low).to(pred.dtype)
    return 0.5 * torch.sum(w * (pred - gt) ** 2) / torch.sum(w)


def pem_cls(pred, gt, m):
    pos = (gt > 0.9).to(pred.dtype)
    neg = (gt <= 0.9).to(pred.dtype) * m
    return balanced_bce(pred, pos, neg, torch.sum(pos) + torch.sum(neg))


def loss(maps, start, end, gt_iou, gt_start, gt_end, u, reg_weight=10.0):
    """(total, tem, reg, cls); maps [B, 2, T (start), T (end)], gt_iou [B, T, T] [start, end]."""
    m = bm_mask(maps.shape[-1])
    gt_iou = gt_iou * m
    reg = pem_reg(maps[:, 0], gt_iou, m, u)
    cls = pem_cls(maps[:, 1], gt_iou, m)
    t = tem(start, gt_start) + tem(end, gt_end)
    return t + reg_weight * reg + cls, t, reg, cls


def uniform(seed, n):
    """lofi's splitmix64 draws in [0, 1) (exact float32 values)."""
    mask64 = (1 << 64) - 1
    s, out = seed, []
    for _ in range(n):
        s = (s + 0x9E3779B97F4A7C15) & mask64
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask64
        z ^= z >> 31
        out.append((z >> 40) / float(1 << 24))
    return np.array(out, dtype=np.float32)


# ------------------------------------------------------------------------------------------------
# Proposals and Soft-NMS

def proposals(start, end, clr, reg):
    """[(xmin, xmax, score)], fractions of the video; clr / reg [T (start), T (end)]."""
    t = len(start)
    out = []
    for s in range(t):
        for e in range(s + 1, t):
            score = float(start[s]) * float(end[e]) * float(clr[s, e - 1]) * float(reg[s, e - 1])
            out.append((s / t, e / t, score))
    return out


def _iou(a0, a1, b0, b1):
    inter = max(min(a1, b1) - max(a0, b0), 0.0)
    return inter / ((a1 - a0) - inter + (b1 - b0))


def soft_nms(props, alpha, low, high, top_k=100):
    """BMN's width-gated Soft-NMS on [(xmin, xmax, score)] (fractions); kept in order."""
    pool = sorted(props, key=lambda p: -p[2])
    pool = [list(p) for p in pool]
    if len(pool) <= 1:
        return [tuple(p) for p in pool][:top_k]
    kept = []
    while len(pool) > 1 and len(kept) < top_k + 1:
        best = max(range(len(pool)), key=lambda i: (pool[i][2], -i))
        b0, b1, _ = pool[best]
        gate = low + (high - low) * (b1 - b0)
        for i, p in enumerate(pool):
            if i != best:
                o = _iou(p[0], p[1], b0, b1)
                if o > gate:
                    p[2] *= math.exp(-o * o / alpha)
        kept.append(tuple(pool.pop(best)))
    kept.sort(key=lambda p: -p[2])
    return kept[:top_k]
