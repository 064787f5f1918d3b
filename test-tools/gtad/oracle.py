"""An oracle of the official G-TAD (ActivityNet code, `anet` branch of frostinassiky/gtad), on the CPU.

Written by us from reading the official sources, not copied from them:
- `Align1D`: the CUDA kernel `Align1D_cuda_kernal.cu` with sampling ratio 0, forward and backward
  (each output bin averages ceil(height / bins) linearly interpolated points; the backward adds
  each point's share into the two snippets it read, as the kernel's atomicAdd does). RoI
  positions are computed in float32 in the kernel's order of operations;
- `GraphAlign`'s anchors (`models.py`): RoI [s - (d+1)/2, s + d + (d+1)/2] for anchor
  (duration index d, start s), the placeholder RoI [0, 0] for anchors past the end, 32 inner and
  4 context bins, the context being each node's mean over its 3 nearest graph neighbours;
- the GTAD network (`models.py`), with lofi's parameter names (stem, backbone1, start_gcn,
  start_out, end_gcn, end_out, backbone2, loc1..loc5);
- the training targets (`dataset.py`), the loss (`loss_function.py`) and the proposal rule of
  `gtad_inference.py` with the clr x reg score of `gtad_postprocess.py`.

The regression loss's random band sampling takes its uniform draws as an argument; `uniform()`
reproduces the splitmix64 stream lofi's loss draws from a seed (one draw per map entry, used by
both bands, which are disjoint), so that lofi and the oracle sample the same anchors.

`confirm_official.py` checks this oracle once against the official code itself;
`make_fixtures.py` writes the fixtures the Rust tests compare lofi with.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

F32 = np.float32
EXPAND = 0.5
INNER_BINS = 32
CONTEXT_BINS = 4


# ------------------------------------------------------------------------------------------------
# Align1D (sampling ratio 0)

def roi_points(start, end, bins, height):
    """Sample points of one RoI: list of (bin, low, high, w_low, w_high) with weights / count."""
    start, end = F32(start), F32(end)
    roi_h = max(F32(end - start), F32(1.0))
    bin_size = F32(roi_h / F32(bins))
    grid = int(math.ceil(F32(roi_h / F32(bins))))
    count = F32(grid)
    out = []
    for pt in range(bins):
        for it in range(grid):
            t = F32(F32(start + F32(F32(pt) * bin_size)) + F32(F32(F32(it + 0.5) * bin_size) / count))
            if t < -1.0 or t > height:
                continue
            if t <= 0:
                t = F32(0.0)
            low = int(t)
            if low >= height - 1:
                low = high = height - 1
                t = F32(low)
            else:
                high = low + 1
            lt = F32(t - F32(low))
            ht = F32(F32(1.0) - lt)
            out.append((pt, low, high, float(ht) / float(count), float(lt) / float(count)))
    return out


def align1d_taps(rois, bins, height):
    """All sample points of `rois` ([N, 3]: batch, start, end) as index / weight arrays."""
    cols = {k: [] for k in ("row", "b", "low", "high", "w1", "w2")}
    for n, (b, s, e) in enumerate(rois):
        for pt, low, high, w1, w2 in roi_points(s, e, bins, height):
            cols["row"].append(n * bins + pt)
            cols["b"].append(int(b))
            cols["low"].append(low)
            cols["high"].append(high)
            cols["w1"].append(w1)
            cols["w2"].append(w2)
    return {k: torch.tensor(v, dtype=torch.float64 if k in ("w1", "w2") else torch.long)
            for k, v in cols.items()}


class Align1D(torch.autograd.Function):
    """Align1D's forward (sum of interpolated points / count) and its kernel backward."""

    @staticmethod
    def forward(ctx, x, taps, n_rois, bins):
        b, c, t = x.shape
        xt = x.permute(0, 2, 1)  # [B, T, C]
        vals = (xt[taps["b"], taps["low"]] * taps["w1"].to(x.dtype)[:, None]
                + xt[taps["b"], taps["high"]] * taps["w2"].to(x.dtype)[:, None])  # [P, C]
        out = torch.zeros(n_rois * bins, c, dtype=x.dtype).index_add_(0, taps["row"], vals)
        ctx.taps, ctx.shape, ctx.n_rois, ctx.bins = taps, x.shape, n_rois, bins
        return out.view(n_rois, bins, c).permute(0, 2, 1).contiguous()  # [N, C, bins]

    @staticmethod
    def backward(ctx, grad):
        taps = ctx.taps
        b, c, t = ctx.shape
        g = grad.permute(0, 2, 1).reshape(ctx.n_rois * ctx.bins, c)[taps["row"]]  # [P, C]
        gx = torch.zeros(b, t, c, dtype=grad.dtype)
        gx.index_put_((taps["b"], taps["low"]), g * taps["w1"].to(grad.dtype)[:, None], accumulate=True)
        gx.index_put_((taps["b"], taps["high"]), g * taps["w2"].to(grad.dtype)[:, None], accumulate=True)
        return gx.permute(0, 2, 1), None, None, None


def gtad_anchors(bs, t, d):
    """GraphAlign._get_anchors: [bs * t * d, 3] float32 RoIs, start-major then duration."""
    rows = []
    for k in range(bs):
        for s in range(t):
            for dur in range(d):
                if s + dur < t:
                    ln = float(dur + 1)
                    rows.append([k, s - ln * EXPAND, s + dur + ln * EXPAND])
                else:
                    rows.append([k, 0.0, 0.0])
    return np.array(rows, dtype=np.float32)


_TAPS = {}


def sgalign(x, ctx):
    """[B, C, T] block and context features -> [B, C * 36, D, T] (channel c * 36 + i)."""
    b, c, t = x.shape
    key = (b, t)
    if key not in _TAPS:
        rois = gtad_anchors(b, t, t)
        _TAPS[key] = (len(rois), align1d_taps(rois, INNER_BINS, t), align1d_taps(rois, CONTEXT_BINS, t))
    n, inner, context = _TAPS[key]
    fi = Align1D.apply(x, inner, n, INNER_BINS)  # [N, C, 32]
    fc = Align1D.apply(ctx, context, n, CONTEXT_BINS)  # [N, C, 4]
    feat = torch.cat((fi, fc), dim=2).reshape(b, t, t, -1)  # [B, start, dur, C * 36]
    return feat.permute(0, 3, 2, 1)


# ------------------------------------------------------------------------------------------------
# Network

def knn(x, k):
    """Indices [B, L, k] of the k nearest nodes (squared distance, self included)."""
    inner = -2 * torch.matmul(x.transpose(2, 1), x)
    xx = torch.sum(x ** 2, dim=1, keepdim=True)
    pairwise = -xx - inner - xx.transpose(2, 1)
    return pairwise.topk(k=k, dim=-1)[1]


def neighbours(x, idx):
    """x [B, C, L], idx [B, L, k] -> [B, C, L, k]."""
    b, c, l = x.shape
    k = idx.shape[-1]
    flat = (idx + torch.arange(b).view(-1, 1, 1) * l).reshape(-1)
    feat = x.transpose(2, 1).reshape(b * l, c)[flat].view(b, l, k, c)
    return feat.permute(0, 3, 1, 2)


class GCNeXt(nn.Module):
    def __init__(self, ch, k=3, groups=32, width_group=4):
        super().__init__()
        w = groups * width_group
        self.k = k
        self.tconv1 = nn.Conv1d(ch, w, 1)
        self.tconv2 = nn.Conv1d(w, w, 3, padding=1, groups=groups)
        self.tconv3 = nn.Conv1d(w, ch, 1)
        self.sconv1 = nn.Conv2d(2 * ch, w, 1)
        self.sconv2 = nn.Conv2d(w, w, 1, groups=groups)
        self.sconv3 = nn.Conv2d(w, ch, 1)

    def forward(self, x):
        tout = self.tconv3(F.relu(self.tconv2(F.relu(self.tconv1(x)))))
        nb = neighbours(x, knn(x, self.k))
        me = x.unsqueeze(3).expand_as(nb)
        e = torch.cat((nb, me), dim=1)
        sout = self.sconv3(F.relu(self.sconv2(F.relu(self.sconv1(e))))).max(dim=-1)[0]
        return F.relu(tout + x + sout)


class Gtad(nn.Module):
    """models.GTAD with goi_style 1, goi_samp 0, max_duration = temporal scale, 1x1 map kernels."""

    def __init__(self, feat_dim, h1, h2, h3):
        super().__init__()
        self.stem = nn.Conv1d(feat_dim, h1, 3, padding=1, groups=4)
        self.backbone1 = GCNeXt(h1)
        self.start_gcn = GCNeXt(h1)
        self.start_out = nn.Conv1d(h1, 1, 1)
        self.end_gcn = GCNeXt(h1)
        self.end_out = nn.Conv1d(h1, 1, 1)
        self.backbone2 = GCNeXt(h1)
        self.loc1 = nn.Conv2d(h1 * (INNER_BINS + CONTEXT_BINS), h3, 1)
        self.loc2 = nn.Conv2d(h3, h2, 1)
        self.loc3 = nn.Conv2d(h2, h2, 1)
        self.loc4 = nn.Conv2d(h2, h2, 1)
        self.loc5 = nn.Conv2d(h2, 2, 1)

    def forward(self, x):
        base = self.backbone1(F.relu(self.stem(x)))
        g = self.backbone2(base)
        start = torch.sigmoid(self.start_out(self.start_gcn(base))).squeeze(1)
        end = torch.sigmoid(self.end_out(self.end_gcn(base))).squeeze(1)
        ctx = neighbours(g, knn(g, 3)).mean(dim=-1)
        m = sgalign(g, ctx)
        for conv in (self.loc1, self.loc2, self.loc3, self.loc4):
            m = F.relu(conv(m))
        return torch.sigmoid(self.loc5(m)), start, end


# ------------------------------------------------------------------------------------------------
# Targets (dataset.py), fractions of the video

def _iou(a0, a1, b0, b1):
    inter = np.maximum(np.minimum(a1, b1) - np.maximum(a0, b0), 0.0)
    return inter / (a1 - a0 - inter + b1 - b0)


def _ioa(a0, a1, b0, b1):
    inter = np.maximum(np.minimum(a1, b1) - np.maximum(a0, b0), 0.0)
    return inter / (a1 - a0)


def targets(segments, t):
    """(start [T], end [T], iou [T(duration), T(start)]) as float32, iou not yet masked."""
    gap = 1.0 / t
    match = np.array([[[gap * i, gap * i + gap * j] for j in range(1, t + 1)] for i in range(t)])
    match = np.transpose(match, [1, 0, 2]).reshape(-1, 2)  # duration x start
    segs = np.asarray(segments, dtype=np.float64)
    iou = np.max([_iou(match[:, 0], match[:, 1], s, e).reshape(t, t) for s, e in segs], axis=0)
    a_min = [gap * (i - 0.5) for i in range(t)]
    a_max = [gap * (i + 0.5) for i in range(1, t + 1)]
    half = 3 * gap / 2
    starts = np.stack((segs[:, 0] - half, segs[:, 0] + half), axis=1)
    ends = np.stack((segs[:, 1] - half, segs[:, 1] + half), axis=1)
    st = [np.max(_ioa(a_min[j], a_max[j], starts[:, 0], starts[:, 1])) for j in range(t)]
    en = [np.max(_ioa(a_min[j], a_max[j], ends[:, 0], ends[:, 1])) for j in range(t)]
    return (np.array(st, dtype=np.float32), np.array(en, dtype=np.float32), iou.astype(np.float32))


def mask(t):
    """get_mask: [duration, start], 1 where start + duration + 1 <= T."""
    return torch.tensor([[1.0] * (t - d) + [0.0] * d for d in range(t)], dtype=torch.float64)


# ------------------------------------------------------------------------------------------------
# Loss (loss_function.py)

EPS = 1e-6


def bi_loss(pred, gt):
    pred, gt = pred.reshape(-1), gt.reshape(-1)
    pmask = (gt > 0.5).to(pred.dtype)
    ratio = len(pmask) / torch.sum(pmask)
    coef_0 = 0.5 * ratio / (ratio - 1)
    coef_1 = 0.5 * ratio
    loss_pos = coef_1 * torch.log(pred + EPS) * pmask
    loss_neg = coef_0 * torch.log(1.0 - pred + EPS) * (1.0 - pmask)
    return -torch.mean(loss_pos + loss_neg)


def reg_loss(pred, gt, m, u_mid, u_low):
    """pem_reg_loss_func; band ratios and comparisons in float32 as in fp32 training."""
    gt32 = gt.to(torch.float32)
    h = (gt32 > 0.7).to(torch.float32)
    mid = ((gt32 <= 0.7) & (gt32 > 0.3)).to(torch.float32)
    low = ((gt32 <= 0.3) & (gt32 > 0.0)).to(torch.float32) * m.to(torch.float32)
    r_m = torch.sum(h) / torch.sum(mid)
    r_l = torch.sum(h) / torch.sum(low)
    sm = ((mid * u_mid) > (1.0 - r_m)).to(torch.float32)
    sl = ((low * u_low) > (1.0 - r_l)).to(torch.float32)
    w = (h + sm + sl).to(pred.dtype)
    return 0.5 * torch.sum((pred * w - gt * w) ** 2) / torch.sum(w)


def cls_loss(pred, gt, m):
    pmask = (gt > 0.9).to(pred.dtype)
    nmask = (gt <= 0.9).to(pred.dtype) * m
    num_pos = torch.sum(pmask)
    num_entries = num_pos + torch.sum(nmask)
    ratio = num_entries / num_pos
    coef_0 = 0.5 * ratio / (ratio - 1)
    coef_1 = 0.5 * ratio
    loss_pos = coef_1 * torch.log(pred + EPS) * pmask
    loss_neg = coef_0 * torch.log(1.0 - pred + EPS) * nmask
    return -torch.sum(loss_pos + loss_neg) / num_entries


def gtad_loss(maps, start, end, gt_iou, gt_start, gt_end, u_mid, u_low):
    """(total, boundary, regression, classification) of gtad_loss_func."""
    t = maps.shape[-1]
    m = mask(t)
    gt_iou = gt_iou * m
    reg = reg_loss(maps[:, 0], gt_iou, m, u_mid, u_low)
    cls = cls_loss(maps[:, 1], gt_iou, m)
    tem = bi_loss(start, gt_start) + bi_loss(end, gt_end)
    return tem + 10 * reg + cls, tem, reg, cls


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
# Proposals (gtad_inference.py, score as gtad_postprocess.py)

def proposals(start, end, clr, reg):
    """[(xmin, xmax, clr * reg)] of one video; start/end [T], clr/reg [D, T]."""
    t = len(start)
    max_s, max_e = max(start), max(end)
    sb = np.zeros(t)
    sb[0] = 1
    eb = np.zeros(t)
    eb[-1] = 1
    for i in range(1, t - 1):
        if (start[i] > start[i + 1] and start[i] > start[i - 1]) or start[i] > 0.5 * max_s:
            sb[i] = 1
        if (end[i] > end[i + 1] and end[i] > end[i - 1]) or end[i] > 0.5 * max_e:
            eb[i] = 1
    out = []
    for d in range(clr.shape[0]):
        for s in range(t):
            e = s + d + 1
            if e < t and sb[s] == 1 and eb[e] == 1:
                out.append((s / t, e / t, float(clr[d, s]) * float(reg[d, s])))
    return out
